"""The published metrics, declared once: every family a publisher (the API, the exporter) writes
and the scaler reads, with its labels and help (docs/metrics.md is their contract).

The scaler owns this module because the families are its input; publishers import it, so a
name cannot drift between the side that writes it and the side that reads it.
"""

from __future__ import annotations

from collections.abc import Mapping

MODEL_LABEL = "model"
STRATEGY_LABEL = "strategy"
PRIORITY_LABEL = "priority"

ANALYSES = "oasis_model_analyses"
PENDING = "oasis_model_pending_sub_tasks"
RECORDED = "oasis_model_recorded_sub_tasks"
QUEUED_OR_RUNNING = "oasis_model_queued_or_running_sub_tasks"
QUEUED = "oasis_model_queued_sub_tasks"
UNQUEUED_CHUNKS = "oasis_model_unqueued_chunks"
JOINING_CHUNKS = "oasis_model_joining_chunks"
STAGE_GAP = "oasis_model_stage_gap_seconds"
WORKER_SLOTS = "oasis_model_worker_slots"
QUEUE_MESSAGES = "oasis_model_queue_messages"
SCALING_INFO = "oasis_model_scaling_info"
WORKERS = "oasis_model_workers"
BUSY_WORKERS = "oasis_model_busy_workers"
ANALYSES_BY_PRIORITY = "oasis_model_analyses_by_priority"
REDIS_UP = "oasis_redis_up"
SUB_TASKS = "oasis_sub_tasks_total"
DURATION = "oasis_sub_task_duration_seconds"

# The scaling configuration's numbers, one gauge each: gauge name -> ScalingConfiguration field.
SCALING_GAUGES: Mapping[str, str] = {
    "oasis_model_worker_count_fixed": "worker_count_fixed",
    "oasis_model_worker_count_min": "worker_count_min",
    "oasis_model_worker_count_max": "worker_count_max",
    "oasis_model_chunks_per_worker": "chunks_per_worker",
}
# A model's work, as the scaling strategies count it.
WORK_GAUGES: tuple[str, ...] = (
    ANALYSES,
    PENDING,
    RECORDED,
    QUEUED_OR_RUNNING,
    QUEUED,
    UNQUEUED_CHUNKS,
    JOINING_CHUNKS,
)
# What the model's workers are: sub-tasks each runs at once, and how many are present (the
# fleet budget counts them until they leave).
WORKER_GAUGES: tuple[str, ...] = (WORKER_SLOTS, WORKERS)
# Every family the scaler reads, for sources that can select by name (PromQL, `name[]`).
SCALER_INPUTS: tuple[str, ...] = (
    SCALING_INFO,
    *WORK_GAUGES,
    STAGE_GAP,
    *WORKER_GAUGES,
    *SCALING_GAUGES,
    ANALYSES_BY_PRIORITY,
)

HELP: Mapping[str, str] = {
    ANALYSES: "Main tasks of the model: analyses queued and not yet split, or whose current "
    "stage has sub-tasks queued or running.",
    PENDING: "Sub-tasks of the model pending, queued or running.",
    RECORDED: "Sub-tasks recorded for the model's active analyses, completed ones and the "
    "earlier stage included, cancelled ones not (the upstream controller's count).",
    QUEUED_OR_RUNNING: "Sub-tasks of the model queued or running now.",
    QUEUED: "Sub-tasks of the model on its queue now, waiting for a worker (not running).",
    UNQUEUED_CHUNKS: "Chunk sub-tasks of the model recorded and not queued yet: the chunks its "
    "splits are about to queue.",
    JOINING_CHUNKS: "Chunk sub-tasks of the model's input stages that have none left to queue or "
    "start: their last chunks run, then the join (the losses stage may follow).",
    STAGE_GAP: "Seconds from the last input chunk ending to the first loss chunk queued, in the "
    "model's latest analysis to have both (left out until one has).",
    WORKER_SLOTS: "Sub-tasks one live worker of the model runs at once (its concurrency; the "
    "largest among its live workers, left out when none is live).",
    QUEUE_MESSAGES: "Messages of the model's Redis queue: the list, its priority lists and the "
    "reserved (unacknowledged) messages routed to it.",
    SCALING_INFO: "Always 1; strategy is the model's scaling_strategy.",
    **{
        name: f"The model's scaling_configuration.{field} (defaults filled in)."
        for name, field in SCALING_GAUGES.items()
    },
    REDIS_UP: "1 when this scrape read Redis, 0 when Redis could not be reached (the queue "
    "messages and sub-task activity are then left out).",
    SUB_TASKS: "Sub-tasks that reached each status.",
    DURATION: "Run time of completed sub-tasks (end - start).",
    WORKERS: "Live workers consuming the model's queue (their records of presence in Redis).",
    BUSY_WORKERS: "Live workers of the model's queue running a task.",
    ANALYSES_BY_PRIORITY: "Main tasks of the model (as oasis_model_analyses) by their priority "
    "(1-10); only priorities with at least one.",
}
