"""What the workers write to the API's database: the progress of stages and sub-tasks.

The API owns the schema (api/orm.py); the workers change it only through these functions,
each one short transaction. Every change is conditional on the analysis still being in the
stage it was started for, so a cancelled analysis is never brought back to life by a sub-task
that was already on its way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from api.store.orm import Analysis, Model, SubTask
from api.store.statuses import IN_QUEUE, STAGES, RecordedStatus
from worker.stages import StagePlan, chunk_slug_prefix

INPUT_CHUNK = chunk_slug_prefix("inputs")
LOSS_CHUNK = chunk_slug_prefix("losses")


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class AnalysisFacts:
    """What a splitter needs to know of an analysis, read in one go."""

    id: int
    status: str
    queue: str
    model_id: int
    location_file: str | None
    location_rows: int | None
    settings: dict[str, Any] | None
    model_settings: dict[str, Any] | None
    model_chunking: dict[str, Any] | None
    chunking_override: dict[str, Any] | None


def read_analysis(sessions: sessionmaker[Session], analysis_id: int) -> AnalysisFacts | None:
    with sessions() as session:
        row = session.get(Analysis, analysis_id)
        if row is None:
            return None
        return AnalysisFacts(
            id=row.id,
            status=row.status,
            queue=row.model.queue_name,
            model_id=row.model_id,
            location_file=row.portfolio.location_file_stored,
            location_rows=row.portfolio.location_file_rows,
            settings=row.settings,
            model_settings=row.model.settings,
            model_chunking=row.model.chunking_configuration,
            chunking_override=row.chunking_override,
        )


def begin_stage(
    sessions: sessionmaker[Session],
    analysis_id: int,
    plan: StagePlan,
    task_ids: Sequence[str],
    queue: str,
    *,
    expected: str,
    chunks_field: str,
    events: int = 0,
) -> bool:
    """Record every sub-task of the stage as pending and move the analysis to started.

    False, and nothing written, when the analysis is no longer in the `expected` status.
    """
    statuses = STAGES[plan.stage]
    with sessions.begin() as session:
        row = session.get(Analysis, analysis_id, with_for_update=True)
        if row is None or row.status != expected:
            return False
        session.execute(
            delete(SubTask).where(
                (SubTask.analysis_id == analysis_id) & (SubTask.stage == plan.stage)
            )
        )
        stamp = now()
        for spec, task_id in zip(plan.sub_tasks, task_ids, strict=True):
            session.add(
                SubTask(
                    analysis_id=analysis_id,
                    stage=plan.stage,
                    task_id=task_id,
                    status="PENDING",
                    queue_name=queue,
                    name=spec.name,
                    slug=spec.slug,
                    pending_time=stamp,
                )
            )
        row.status = statuses.started
        setattr(row, chunks_field, len(plan.chunks))
        row.task_started = row.task_started or stamp
        if plan.stage == "losses":
            row.num_events_total, row.num_events_complete = events, 0
    return True


@dataclass(frozen=True)
class Queued:
    """Which model's stage a sub-task that just became queued belongs to (for its metrics)."""

    queue: str
    stage: str


def mark_queued(
    sessions: sessionmaker[Session], task_id: str, message: str | None = None
) -> Queued | None:
    """A pending sub-task's message is being put on its queue: it is queued from now, and the
    message (JSON) is kept for the reconciler.

    None when no pending sub-task has that id (a retry's message, or a stage replaced since).
    """
    with sessions.begin() as session:
        task = session.scalar(
            select(SubTask)
            .where((SubTask.task_id == task_id) & (SubTask.status == "PENDING"))
            .with_for_update()
        )
        if task is None:
            return None
        task.status, task.queue_time = "QUEUED", now()
        if message is not None:
            task.message = message
        if task.stage == "losses" and task.slug == f"{LOSS_CHUNK}1":
            _note_stage_gap(session, task.analysis_id, task.queue_time)
        return Queued(task.queue_name, task.stage)


def _note_stage_gap(session: Session, analysis_id: int, queued: datetime) -> None:
    """The analysis's loss chunks are being queued: the time since its last input chunk ended
    becomes its model's latest gap between stages (the scaler keeps a joining stage's workers
    when that gap is shorter than a worker start). Nothing when it has no input chunk ended."""
    ended = session.scalar(
        select(func.max(SubTask.end_time)).where(
            (SubTask.analysis_id == analysis_id)
            & (SubTask.stage == "inputs")
            & SubTask.slug.startswith(INPUT_CHUNK)
        )
    )
    if ended is None:
        return
    model_id = select(Analysis.model_id).where(Analysis.id == analysis_id).scalar_subquery()
    gap = max(_seconds_between(ended, queued), 0.0)  # two hosts' clocks may disagree a little
    # Not an edit of the model: its `modified` stays as it was.
    session.execute(
        update(Model)
        .where(Model.id == model_id)
        .values(stage_gap_seconds=gap, modified=Model.modified)
    )


def start_sub_task(
    sessions: sessionmaker[Session], analysis_id: int, stage: str, slug: str, worker: str
) -> bool:
    """Mark a sub-task started; False when its analysis left the stage (cancelled, failed)."""
    with sessions.begin() as session:
        status = session.scalar(select(Analysis.status).where(Analysis.id == analysis_id))
        if status != STAGES[stage].started:
            return False
        session.execute(
            update(SubTask)
            .where(
                (SubTask.analysis_id == analysis_id)
                & (SubTask.stage == stage)
                & (SubTask.slug == slug)
                & SubTask.status.in_(IN_QUEUE + ("ERROR",))
            )
            .values(status="STARTED", start_time=now(), end_time=None, worker=worker)
        )
    return True


def finish_sub_task(
    sessions: sessionmaker[Session],
    analysis_id: int,
    stage: str,
    slug: str,
    output_log: str,
    *,
    analysis_status: str | None = None,
) -> float | None:
    """Mark a sub-task completed; with `analysis_status`, move the analysis on in the same
    transaction (the last sub-task of a stage), so no one sees all done and still started.

    Its run time in seconds (end - start, as recorded), or None when nothing was completed
    because the analysis left the stage.
    """
    statuses = STAGES[stage]
    with sessions.begin() as session:
        row = session.get(Analysis, analysis_id, with_for_update=True)
        if row is None or row.status != statuses.started:
            return None
        seconds = None
        task = _sub_task(session, analysis_id, stage, slug)
        if task is not None:
            task.status, task.end_time, task.output_log = "COMPLETED", now(), output_log
            seconds = _seconds_between(task.start_time, task.end_time)
        if stage == "losses" and slug.startswith(LOSS_CHUNK) and row.analysis_chunks:
            # The client's progress bar: events of the chunks done so far (chunks are even).
            done = session.scalar(
                select(func.count())
                .select_from(SubTask)
                .where(
                    (SubTask.analysis_id == analysis_id)
                    & (SubTask.stage == stage)
                    & SubTask.slug.startswith(LOSS_CHUNK)
                    & (SubTask.status == "COMPLETED")
                )
            )
            row.num_events_complete = row.num_events_total * (done or 0) // row.analysis_chunks
        if analysis_status:
            row.status = analysis_status
            if analysis_status == statuses.done:
                row.task_finished = now()
    return seconds


def note_retry(
    sessions: sessionmaker[Session],
    analysis_id: int,
    stage: str,
    slug: str,
    attempt: int,
    error: str,
) -> bool:
    """A failed attempt will be tried again: the sub-task is queued again.

    False, and nothing written, when the analysis left the stage meanwhile (cancelled, or
    failed by another sub-task: its sub-tasks are CANCELLED and must stay so) or the sub-task is
    gone; the caller then does not try again. The analysis row is locked: a cancel that
    updates it either comes first and is seen here, or waits and then cancels the retry.
    """
    with sessions.begin() as session:
        row = session.get(Analysis, analysis_id, with_for_update=True)
        if row is None or row.status != STAGES[stage].started:
            return False
        task = _sub_task(session, analysis_id, stage, slug)
        if task is None:
            return False
        task.retry_count = attempt
        task.status = "QUEUED"
        task.retry_log = (task.retry_log or "") + f"attempt {attempt} failed: {error}\n"
        return True


def fail_stage(
    sessions: sessionmaker[Session], analysis_id: int, stage: str, slug: str, traceback: str
) -> dict[tuple[str, RecordedStatus], int]:
    """The sub-task failed for good: it and its analysis end in error, with the traceback, and
    the analysis's other unfinished sub-tasks are cancelled.

    What changed, as (stage, status) -> sub-tasks; empty when the analysis had left the stage.
    """
    statuses = STAGES[stage]
    changed: dict[tuple[str, RecordedStatus], int] = {}
    with sessions.begin() as session:
        row = session.get(Analysis, analysis_id, with_for_update=True)
        if row is None or row.status != statuses.started:
            return changed
        task = _sub_task(session, analysis_id, stage, slug)
        if task is not None:
            task.status, task.end_time, task.error_log = "ERROR", now(), traceback
            changed[(stage, "ERROR")] = 1
        row.status, row.task_finished = statuses.error, now()
        if stage == "inputs":
            row.input_generation_traceback = traceback
        else:
            row.run_traceback = traceback
        unfinished = (SubTask.analysis_id == analysis_id) & SubTask.status.in_(IN_QUEUE)
        for other_stage, count in session.execute(
            select(SubTask.stage, func.count()).where(unfinished).group_by(SubTask.stage)
        ):
            changed[(other_stage, "CANCELLED")] = count
        session.execute(update(SubTask).where(unfinished).values(status="CANCELLED"))
    return changed


def refuse_stage(
    sessions: sessionmaker[Session], analysis_id: int, stage: str, reason: str
) -> None:
    """A queued stage that cannot start ends in error, with the reason as its traceback."""
    statuses = STAGES[stage]
    with sessions.begin() as session:
        row = session.get(Analysis, analysis_id, with_for_update=True)
        if row is None or row.status != statuses.queued:
            return
        row.status, row.task_finished = statuses.error, now()
        if stage == "inputs":
            row.input_generation_traceback = reason
        else:
            row.run_traceback = reason


def _seconds_between(start: datetime | None, end: datetime | None) -> float:
    """Seconds from start to end; 0 when either is missing (start_sub_task stamps the start
    before a step runs, so only a row changed by hand lacks one)."""
    if start is None or end is None:
        return 0.0
    # SQLite gives back naive datetimes; every time here is written in UTC.
    start, end = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in (start, end))
    return (end - start).total_seconds()


def _sub_task(session: Session, analysis_id: int, stage: str, slug: str) -> SubTask | None:
    return session.scalar(
        select(SubTask).where(
            (SubTask.analysis_id == analysis_id) & (SubTask.stage == stage) & (SubTask.slug == slug)
        )
    )
