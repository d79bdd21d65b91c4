"""The scaling core: how many workers a model asks for, from its configuration and its work.

Pure: no I/O and nothing from flask, celery, grpc, redis or sqlalchemy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from scaler.configuration import ScalingConfiguration, ScalingStrategy


@dataclass(frozen=True, slots=True)
class Work:
    """What a model has to do now (design.md, "Scaling strategies").

    `analyses`: its active analyses; `pending`: its sub-tasks pending, queued or running;
    `sub_tasks`: every sub-task recorded for the active analyses, completed ones and the earlier
    stage included (upstream's count); `queued_or_running`: those on the queue or running now;
    `queued`: those of them on the queue, waiting for a worker; `slots_per_worker`: sub-tasks one
    worker runs at once; `workers`: the workers present (their records of presence).
    `unqueued_chunks`: chunks recorded and not queued yet (a split is about to queue them);
    `joining_chunks`: the chunks of input stages with none left to take (the last ones run,
    then the join; the losses stage may follow); `stage_gap`: seconds from the last input
    chunk ending to the first loss chunk queued, in the model's latest analysis to have both
    (None: none yet); `worker_start`: seconds a new worker takes to start (None: unknown).
    """

    analyses: int
    pending: int
    sub_tasks: int
    queued_or_running: int
    queued: int
    slots_per_worker: int = 1
    workers: int = 0
    unqueued_chunks: int = 0
    joining_chunks: int = 0
    stage_gap: float | None = None
    worker_start: float | None = None


# A strategy sees only a model with work; idle is decided before it.
Strategy = Callable[[ScalingConfiguration, Work], int]


def _fixed_workers(config: ScalingConfiguration, work: Work) -> int:
    return config.worker_count_fixed


def _queue_load(config: ScalingConfiguration, work: Work) -> int:
    # Left-over sub-tasks with no analysis counted are still work: they count as one analysis.
    return min(max(work.analyses, 1), config.worker_count_max)


def _dynamic_tasks(config: ScalingConfiguration, work: Work) -> int:
    cpw, slots = config.chunks_per_worker, work.slots_per_worker
    # Upstream's count: every recorded sub-task of the active analyses, so that it holds its
    # peak until the analyses end. It is the ceiling: more workers than that are never asked.
    # Recorded sub-tasks include the pending ones, so `pending` bounds it from below.
    upstream = _ceil_div(max(work.sub_tasks, work.pending, work.analyses), cpw)
    held = _held_through_join(work)
    if work.queued == 0:
        # Nothing waits for a slot: every running sub-task is the last its worker would take
        # from the queue as it stands, so those workers are released now and leave as their
        # sub-task ends (they finish it first), instead of idling until the HPA's next sync.
        # Kept: the workers for what is recorded but not yet queued (a stage's chunks while its
        # split runs, a join), one while there is any work, and a join's workers held for the
        # next stage. The chunks a split is about to queue will each want a slot as the queued
        # ones do: their workers start while it splits, as many as they will need.
        unqueued = _ceil_div(work.unqueued_chunks, slots)
        ahead = _ceil_div(max(work.pending - work.queued_or_running, work.analyses, 1), cpw)
        return min(upstream, max(unqueued, ahead, held), config.worker_count_max)
    # Below the ceiling, a worker is kept while a queued or running sub-task (or a chunk about
    # to be queued) needs its slots ...
    busy = _ceil_div(work.queued_or_running + work.unqueued_chunks, slots)
    # ... and a stage's workers start while its split runs: its chunks are recorded (pending)
    # before they are queued. An analysis still being split counts as one sub-task.
    coming = _ceil_div(max(work.pending, work.analyses), cpw)
    # No worker present goes while a sub-task waits: a worker still warming takes none yet
    # (worker/warm_gate.py), so fewer may be running than are present, and it is the one that
    # would take the next.
    return min(upstream, max(busy, coming, work.workers, held), config.worker_count_max)


def _held_through_join(work: Work) -> int:
    """Workers kept through an input stage's join for the losses stage that may follow.

    Letting a worker go and starting another costs a worker start; keeping it costs the gap
    until the next stage's chunks are queued. The gap is not known ahead, so the model's last
    one stands for it: shorter than a worker start, the workers present stay (as many as the
    stage's chunks used); longer, or not seen yet, they go as before. Should the losses stage
    not follow, the hold ends with the join, which the last gap says is short.
    """
    if work.stage_gap is None or work.worker_start is None or work.stage_gap >= work.worker_start:
        return 0
    return min(work.workers, _ceil_div(work.joining_chunks, work.slots_per_worker))


STRATEGIES: Mapping[ScalingStrategy, Strategy] = {
    ScalingStrategy.FIXED_WORKERS: _fixed_workers,
    ScalingStrategy.QUEUE_LOAD: _queue_load,
    ScalingStrategy.DYNAMIC_TASKS: _dynamic_tasks,
}


def desired_workers(
    config: ScalingConfiguration | Mapping[str, Any] | None,
    *,
    analyses: int,
    pending: int,
    sub_tasks: int | None = None,
    queued_or_running: int | None = None,
    slots_per_worker: int = 1,
    queued: int | None = None,
    workers: int = 0,
    unqueued_chunks: int = 0,
    joining_chunks: int = 0,
    stage_gap: float | None = None,
    worker_start: float | None = None,
) -> int:
    """Workers the model asks for; `worker_count_min` is a floor in every state, above the cap.

    `config` is the typed configuration or a plain mapping of its fields (missing ones take the
    defaults; a bad one raises pydantic's ValidationError). The counts are those of `Work`; an
    omitted `sub_tasks` or `queued_or_running` means `pending`, which gives the answers of the
    rule before them (`ceil(max(pending, analyses) / chunks_per_worker)`, then the cap). An
    omitted `queued` means `queued_or_running` (every one of them might wait for a slot), which
    gives the answers of the rule before it; a `queued` above `queued_or_running` (two reads a
    moment apart) counts as `queued_or_running`. `workers`: those present; 0 (unknown) keeps
    none of them beyond what the work asks. `unqueued_chunks`, `joining_chunks`, `stage_gap`
    and `worker_start` left out give the answers of the rule before them.
    """
    on_queue = pending if queued_or_running is None else queued_or_running
    if queued is not None and queued < 0:
        raise ValueError(f"work counts must not be negative (queued={queued})")
    for name, count in (
        ("workers", workers),
        ("unqueued_chunks", unqueued_chunks),
        ("joining_chunks", joining_chunks),
    ):
        if count < 0:
            raise ValueError(f"work counts must not be negative ({name}={count})")
    for name, seconds in (("stage_gap", stage_gap), ("worker_start", worker_start)):
        if seconds is not None and not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"{name} must be a number of seconds, 0 or more, got {seconds}")
    work = Work(
        analyses,
        pending,
        pending if sub_tasks is None else sub_tasks,
        on_queue,
        on_queue if queued is None else min(queued, on_queue),
        slots_per_worker,
        workers,
        unqueued_chunks,
        joining_chunks,
        stage_gap,
        worker_start,
    )
    counts = (work.analyses, work.pending, work.sub_tasks, work.queued_or_running)
    if min(counts) < 0:
        raise ValueError(
            "work counts must not be negative (analyses={}, pending={}, sub_tasks={}, "
            "queued_or_running={})".format(*counts)
        )
    if slots_per_worker < 1:
        raise ValueError(f"slots_per_worker must be 1 or more, got {slots_per_worker}")
    typed = (
        config
        if isinstance(config, ScalingConfiguration)
        else ScalingConfiguration.model_validate(config or {})
    )
    wanted = 0
    if work.analyses or work.pending or work.queued_or_running:
        wanted = STRATEGIES[typed.scaling_strategy](typed, work)
    return max(wanted, typed.worker_count_min)


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)
