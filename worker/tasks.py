"""The Celery app: the splitter's main tasks and the one sub-task that runs every step.

Main tasks (put on a model's queue by the API) cut a stage into sub-tasks with the chunking core,
record them all, and queue them on the same queue as one canvas: the steps before the chunks,
a chord of the chunks, then the steps that join them. Workers ack late and reject on worker
loss with a prefetch of 1, so a chunk whose worker dies is delivered again, and every step is
idempotent, so running it twice changes nothing.
"""

from __future__ import annotations

import json
import logging
import os
import traceback
import uuid
from functools import partial
from typing import Any

from celery import Celery, Task, chain, chord
from celery.canvas import Signature
from celery.signals import before_task_publish, worker_process_init, worker_ready

from api.store.statuses import INPUTS, LOSSES, STAGES
from worker import (
    activity,
    group_guard,
    numba_cache,
    reconcile,
    records,
    result_backend,
    warm_gate,
    warm_kernel,
)
from worker.chunking import chunk_count
from worker.configuration import ChunkingConfiguration, ChunkingStrategy
from worker.event_sets import EventSetError, selected_event_count
from worker.messages import GENERATE_AND_RUN_TASK, GENERATE_INPUTS_TASK, RUN_TASK
from worker.records import AnalysisFacts
from worker.runtime import current
from worker.settings import WorkerSettings
from worker.stages import StagePlan, input_generation, losses
from worker.steps import StepContext, step_for
from worker.stored_chunking import stored_chunking

log = logging.getLogger(__name__)
SUB_TASK = "oasis.sub_task"
# The API publishes a main task just before it commits the analysis's new status; a worker
# that is quicker than that commit looks again, this many times, this far apart.
COMMIT_WAIT_TRIES = 20
COMMIT_WAIT_SECONDS = 0.25

app = Celery("oasis_autoscaler")
# A task that waits for the broker to come back tries again at most this far apart, for as long
# as it takes (Celery's result_backend_max_retries is unbounded): it has nothing better to do,
# and a worker stopped meanwhile leaves its message to be delivered again.
BROKER_RETRY_SLEEP_MS = 1000
# About a minute of tries, a second apart at most, before a publication fails.
PUBLISH_RETRY_POLICY = {
    "max_retries": 60,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 1,
}


def configure_app(settings: WorkerSettings) -> Celery:
    """Point the app at the broker with the settings that keep work from being lost."""
    app.conf.update(celery_config(settings))
    # Imported here: the Kubernetes client is only loaded by workers that mark their pod.
    from worker.pod_deletion_cost import activate_for

    activate_for(settings)
    return app


def celery_config(settings: WorkerSettings) -> dict[str, Any]:
    """The worker's Celery configuration."""
    transport = {"visibility_timeout": settings.visibility_timeout_seconds}
    return dict(
        broker_url=settings.redis_url,
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=settings.queue or "celery",
        broker_connection_retry_on_startup=True,
        # A broker that restarts is away for a moment (seconds; `up` restarts its Redis after
        # one). A task that ends then must wait for it: storing its result and counting its
        # chord part are what publishes the join, and Celery's default gives up on the first
        # connection error, so the join would never be published and the analysis would wait
        # for ever. Its retries sleep with jitter, at most BROKER_RETRY_SLEEP_MS apart.
        result_backend_always_retry=True,
        result_backend_max_sleep_between_retries_ms=BROKER_RETRY_SLEEP_MS,
        result_backend=result_backend.backend_url(settings.redis_url),
        # Publishing the next step of a chain (and a chord's join) rides it out too, instead
        # of Celery's 3 tries in under a second; what is lost anyway the reconciler puts back.
        task_publish_retry_policy=PUBLISH_RETRY_POLICY,
        worker_hijack_root_logger=False,
        result_expires=7 * 24 * 3600,
    )


def publish_again(message: dict[str, Any]) -> None:
    """Publish a kept sub-task message as it was first published (worker/reconcile.py)."""
    with app.producer_or_acquire() as producer:
        producer.publish(
            message["body"],
            exchange=message["exchange"],
            routing_key=message["routing_key"],
            headers=message["headers"],
            serializer="json",
            retry=True,
            **message["properties"],
        )


def install_reconciler(settings: WorkerSettings) -> None:
    """Reconcile the queued sub-tasks with the broker every `reconcile_seconds`, from the
    worker's main process once it is ready (called before Celery starts)."""
    if not settings.reconcile_seconds:
        return

    def start(**_: Any) -> None:
        runtime = current()
        reconcile.Reconciler(
            runtime.sessions, runtime.redis, publish_again, settings.reconcile_seconds
        ).start()

    worker_ready.connect(start, weak=False)


@worker_process_init.connect
def _start_pool_process(**_: Any) -> None:
    """Each pool process leads its own process group: when a kernel run fails, its script kills
    the processes of its group started after it, which must not include other pool processes.
    Its guard kills the group when the pool process exits, so no kernel process outlives it.
    Then it warms (worker/warm_gate.py)."""
    group_guard.lead_own_group()
    settings = current().settings
    kernel = None
    if settings.warm_kernel:
        # Started now, so that it warms while the pool process waits for its first task; only
        # if this CPU's numba cache is built (else the first kernel step builds it, then starts
        # the warm kernel, which loads what was built).
        root = settings.effective_numba_cache_dir.absolute()
        if (numba_cache.cpu_folder(root) / numba_cache.MARKER).is_file():
            kernel = warm_kernel.start(numba_cache.cpu_folder(root))
    warm_gate.warm_pool_process(partial(_warm_up, kernel))


def _warm_up(kernel: warm_kernel.WarmKernel | None) -> None:
    """What a pool process's first kernel step would wait for: its warm process, and oasislmf's
    Python side (1.4 s of CPU at its first import)."""
    if kernel is not None:
        kernel.ready()
    import oasislmf.manager  # type: ignore[import-untyped]  # noqa: F401


@before_task_publish.connect
def _mark_queued(
    sender: str | None = None,
    headers: dict[str, Any] | None = None,
    body: Any = None,
    exchange: str | None = None,
    routing_key: str | None = None,
    properties: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    """A sub-task is queued when its message is published: the chunks when the chain reaches
    the chord, each later step when the one before it is done (the Gantt chart's queue wait).
    The message is kept with it, so a broker that loses it can be given it again as it was
    (worker/reconcile.py)."""
    if sender == SUB_TASK and headers and "id" in headers:
        runtime = current()
        message = reconcile.message_json(body, headers, properties, exchange, routing_key)
        queued = records.mark_queued(runtime.sessions, str(headers["id"]), message)
        if queued is not None:
            activity.record(runtime.redis, queued.queue, queued.stage, "QUEUED")


@app.task(name=GENERATE_INPUTS_TASK, bind=True, max_retries=COMMIT_WAIT_TRIES)
def generate_inputs(self: Task, analysis_id: int) -> str:
    return _split_inputs(self, analysis_id, then_run=False)


@app.task(name=GENERATE_AND_RUN_TASK, bind=True, max_retries=COMMIT_WAIT_TRIES)
def generate_and_run(self: Task, analysis_id: int) -> str:
    return _split_inputs(self, analysis_id, then_run=True)


@app.task(name=RUN_TASK, bind=True, max_retries=COMMIT_WAIT_TRIES)
def run(self: Task, analysis_id: int) -> str:
    facts = _queued(self, analysis_id, LOSSES.queued)
    if facts is None:
        return "not queued for a run: nothing to do"
    config = _chunking(facts)
    events = _events(facts)
    strategy = config.loss_strategy
    if events is None and strategy is ChunkingStrategy.DYNAMIC_CHUNKS:
        message = "DYNAMIC_CHUNKS loss chunking needs number_of_events on the selected event set"
        records.refuse_stage(current().sessions, analysis_id, "losses", message)
        return message
    chunks = (
        chunk_count(config, stage="loss", items=events) if events else config.fixed_analysis_chunks
    )
    storage = current().storage
    storage.remove(storage.run_dir(analysis_id))
    storage.remove(storage.output_archive(analysis_id))
    return _start(
        facts,
        losses(chunks),
        expected=LOSSES.queued,
        chunks_field="analysis_chunks",
        events=events or 0,
        then_run=False,
    )


def _split_inputs(task: Task, analysis_id: int, *, then_run: bool) -> str:
    facts = _queued(task, analysis_id, INPUTS.queued)
    if facts is None:
        return "not queued for input generation: nothing to do"
    rows = facts.location_rows or 0
    chunks = chunk_count(_chunking(facts), stage="lookup", items=rows) if rows else 1
    storage = current().storage
    for path in (storage.inputs_work(analysis_id), storage.input_archive(analysis_id)):
        storage.remove(path)
    return _start(
        facts,
        input_generation(chunks),
        expected=INPUTS.queued,
        chunks_field="lookup_chunks",
        events=0,
        then_run=then_run,
    )


def _queued(task: Task, analysis_id: int, expected: str) -> AnalysisFacts | None:
    """The analysis if it is in `expected`; waits out the API's commit; None if it moved on."""
    facts = records.read_analysis(current().sessions, analysis_id)
    if facts is not None and facts.status == expected:
        return facts
    if task.request.retries < COMMIT_WAIT_TRIES and (
        facts is None or "CANCELLED" not in facts.status
    ):
        raise task.retry(countdown=COMMIT_WAIT_SECONDS)
    log.info(
        "analysis %s is %s, not %s: message dropped",
        analysis_id,
        facts.status if facts else "gone",
        expected,
    )
    return None


def _chunking(facts: AnalysisFacts) -> ChunkingConfiguration:
    return stored_chunking(facts.model_chunking, facts.chunking_override, f"analysis {facts.id}")


def _events(facts: AnalysisFacts) -> int | None:
    model_settings = facts.model_settings or _demo_model_settings()
    try:
        return selected_event_count(model_settings, facts.settings)
    except EventSetError:
        return None


def _demo_model_settings() -> Any:
    return json.loads(current().model.model_settings.read_text())


def _start(
    facts: AnalysisFacts,
    plan: StagePlan,
    *,
    expected: str,
    chunks_field: str,
    events: int,
    then_run: bool,
) -> str:
    signatures = [
        _signature(facts, plan, spec.slug, spec.chunk, then_run and spec == plan.last)
        for spec in plan.sub_tasks
    ]
    task_ids = [str(s.options["task_id"]) for s in signatures]
    if not records.begin_stage(
        current().sessions,
        facts.id,
        plan,
        task_ids,
        facts.queue,
        expected=expected,
        chunks_field=chunks_field,
        events=events,
    ):
        return "the analysis moved on before its stage started"
    before, rest = len(plan.before), len(plan.before) + len(plan.chunks)
    canvas = chain(
        *signatures[:before],
        chord(signatures[before:rest], signatures[rest]),
        *signatures[rest + 1 :],
    )
    canvas.apply_async()
    return f"{plan.stage}: {len(plan.chunks)} chunks, {len(plan.sub_tasks)} sub-tasks queued"


def _signature(
    facts: AnalysisFacts, plan: StagePlan, slug: str, chunk: int | None, then_run: bool
) -> Signature:
    return app.signature(
        SUB_TASK,
        args=(facts.id, plan.stage, slug, chunk, len(plan.chunks)),
        kwargs={"then_run": then_run},
        immutable=True,
        options={"queue": facts.queue, "task_id": str(uuid.uuid4())},
    )


@app.task(name=SUB_TASK, bind=True)
def sub_task(
    self: Task,
    analysis_id: int,
    stage: str,
    slug: str,
    chunk: int | None,
    chunks: int,
    then_run: bool = False,
) -> str:
    runtime = current()
    sessions = runtime.sessions
    worker = f"{self.request.hostname}:{os.getpid()}"
    if not records.start_sub_task(sessions, analysis_id, stage, slug, worker):
        # Not counted: whatever moved the analysis on (a cancel, a failed sibling) counted
        # this sub-task CANCELLED when it did.
        return f"{slug}: the analysis left its {stage} stage; skipped"
    facts = records.read_analysis(sessions, analysis_id)
    assert facts is not None
    activity.record(runtime.redis, facts.queue, stage, "STARTED")
    try:
        output = step_for(stage, slug, chunk)(StepContext(runtime, facts, chunk, chunks))
    except Exception as exc:
        attempt = self.request.retries + 1
        if self.request.retries < runtime.settings.max_retries:
            if not records.note_retry(sessions, analysis_id, stage, slug, attempt, repr(exc)):
                # Not counted, as a skipped sub-task: what moved the analysis on counted it.
                return f"{slug}: the analysis left its {stage} stage; not tried again"
            activity.record(runtime.redis, facts.queue, stage, "RETRIED")
            delay = runtime.settings.retry_backoff_seconds * 2**self.request.retries
            raise self.retry(
                exc=exc, countdown=delay, max_retries=runtime.settings.max_retries
            ) from exc
        changed = records.fail_stage(sessions, analysis_id, stage, slug, traceback.format_exc())
        activity.record_many(runtime.redis, facts.queue, changed)
        raise
    _finish(facts, stage, slug, output, last=slug == "cleanup", then_run=then_run)
    return output


def _finish(
    facts: AnalysisFacts, stage: str, slug: str, output: str, *, last: bool, then_run: bool
) -> None:
    runtime = current()
    # The last sub-task moves the analysis on: to a queued run when one was asked for.
    analysis_status = None
    if last:
        analysis_status = LOSSES.queued if then_run else STAGES[stage].done
    seconds = records.finish_sub_task(
        runtime.sessions, facts.id, stage, slug, output, analysis_status=analysis_status
    )
    if last and then_run:
        app.send_task(RUN_TASK, args=[facts.id], queue=facts.queue)
    if seconds is not None:
        activity.record_completed(runtime.redis, facts.queue, stage, seconds)
