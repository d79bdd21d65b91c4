"""The metrics' reads of the database: every model with its work, and main tasks by priority.

Grouped queries count every model's work, however many models there are.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session, load_only, sessionmaker

from api.store.configurations import stored
from api.store.orm import Analysis, Model, SubTask
from api.store.statuses import IN_QUEUE, INPUTS, MAIN_TASK_STATUSES, ON_QUEUE, SubTaskStatus
from scaler.configuration import ScalingConfiguration
from worker.messages import model_queue
from worker.stages import chunk_slug_prefix

log = logging.getLogger(__name__)
CANCELLED: SubTaskStatus = "CANCELLED"
PENDING: SubTaskStatus = "PENDING"
QUEUED: SubTaskStatus = "QUEUED"
# A chunk is taken once a worker started it; until then it waits to be queued or taken.
NOT_TAKEN: tuple[SubTaskStatus, ...] = (PENDING, QUEUED)
TAKEN: tuple[SubTaskStatus, ...] = ("STARTED", "COMPLETED")
# A chunk of either stage, and a chunk of an input stage.
IS_CHUNK = SubTask.slug.startswith(chunk_slug_prefix("inputs")) | SubTask.slug.startswith(
    chunk_slug_prefix("losses")
)
IS_INPUT_CHUNK = (SubTask.stage == "inputs") & SubTask.slug.startswith(chunk_slug_prefix("inputs"))


@dataclass(frozen=True)
class StoredModel:
    """What the database says of one model queue."""

    queue: str
    scaling: ScalingConfiguration
    analyses: int
    pending: int
    # Every sub-task of its active analyses but cancelled ones, and those queued or running.
    recorded: int = 0
    queued_or_running: int = 0
    # Those on the queue, waiting for a worker.
    queued: int = 0
    # Chunks recorded and not queued yet; chunks of input stages with none left to take (the last
    # ones run, then the join); the model's latest gap between stages (None: none seen yet).
    unqueued_chunks: int = 0
    joining_chunks: int = 0
    stage_gap: float | None = None


def read_models(sessions: sessionmaker[Session]) -> dict[str, StoredModel]:
    """Every model by queue name, with its work counted by grouped queries (idle: 0)."""
    with sessions() as session:
        models = session.scalars(
            select(Model)
            .options(
                load_only(
                    Model.supplier_id,
                    Model.model_id,
                    Model.version_id,
                    Model.scaling_configuration,
                    Model.stage_gap_seconds,
                )
            )
            .order_by(Model.id)
        ).all()
        analyses = _per_model(
            session,
            select(Analysis.model_id, func.count())
            .where(Analysis.status.in_(MAIN_TASK_STATUSES))
            .group_by(Analysis.model_id),
        )
        pending = _sub_tasks_per_model(session, SubTask.status.in_(IN_QUEUE))
        recorded = _sub_tasks_per_model(
            session, Analysis.status.in_(MAIN_TASK_STATUSES) & (SubTask.status != CANCELLED)
        )
        queued_or_running = _sub_tasks_per_model(session, SubTask.status.in_(ON_QUEUE))
        queued = _sub_tasks_per_model(session, SubTask.status == QUEUED)
        unqueued_chunks = _sub_tasks_per_model(session, (SubTask.status == PENDING) & IS_CHUNK)
        joining_chunks = _joining_chunks(session)
        states: dict[str, StoredModel] = {}
        for model in models:
            state = StoredModel(
                queue=model.queue_name,
                scaling=stored(
                    ScalingConfiguration, model.scaling_configuration, f"model {model.id}"
                ),
                analyses=analyses.get(model.id, 0),
                pending=pending.get(model.id, 0),
                recorded=recorded.get(model.id, 0),
                queued_or_running=queued_or_running.get(model.id, 0),
                queued=queued.get(model.id, 0),
                unqueued_chunks=unqueued_chunks.get(model.id, 0),
                joining_chunks=joining_chunks.get(model.id, 0),
                stage_gap=model.stage_gap_seconds,
            )
            states[state.queue] = _same_queue(states.get(state.queue), state)
        return states


def _sub_tasks_per_model(session: Session, where: ColumnElement[bool]) -> dict[int, int]:
    """Sub-tasks matching `where` (over the sub-task and its analysis), counted per model."""
    return _per_model(
        session,
        select(Analysis.model_id, func.count())
        .select_from(SubTask)
        .join(Analysis, SubTask.analysis_id == Analysis.id)
        .where(where)
        .group_by(Analysis.model_id),
    )


def _joining_chunks(session: Session) -> dict[int, int]:
    """Per model, the input chunks of analyses generating inputs that have none left to queue
    or take: their last chunks run, then the stage's join, and the losses stage may follow."""
    waiting = select(SubTask.analysis_id).where(IS_INPUT_CHUNK & SubTask.status.in_(NOT_TAKEN))
    return _sub_tasks_per_model(
        session,
        (Analysis.status == INPUTS.started)
        & IS_INPUT_CHUNK
        & SubTask.status.in_(TAKEN)
        & Analysis.id.not_in(waiting),
    )


def _per_model(session: Session, statement: Select[int, int]) -> dict[int, int]:
    return {model_id: count for model_id, count in session.execute(statement)}


def _same_queue(first: StoredModel | None, other: StoredModel) -> StoredModel:
    """Two models whose ids join to the same queue name (`a-b`,`c` and `a`,`b-c`) share one
    queue and its workers: their work adds up, and the first registered one's configuration
    holds. Publishing both would repeat a series, which Prometheus refuses."""
    if first is None:
        return other
    log.warning("two models share the queue %s: their work is published as one", other.queue)
    return StoredModel(
        first.queue,
        first.scaling,
        first.analyses + other.analyses,
        first.pending + other.pending,
        first.recorded + other.recorded,
        first.queued_or_running + other.queued_or_running,
        first.queued + other.queued,
        first.unqueued_chunks + other.unqueued_chunks,
        first.joining_chunks + other.joining_chunks,
        first.stage_gap if first.stage_gap is not None else other.stage_gap,
    )


def read_priorities(sessions: sessionmaker[Session]) -> dict[str, Counter[int]]:
    """Main tasks per model queue and priority, by one grouped query (for the fleet budget)."""
    statement = (
        select(Model.supplier_id, Model.model_id, Model.version_id, Analysis.priority, func.count())
        .join(Model, Analysis.model_id == Model.id)
        .where(Analysis.status.in_(MAIN_TASK_STATUSES))
        .group_by(Model.supplier_id, Model.model_id, Model.version_id, Analysis.priority)
    )
    counts: dict[str, Counter[int]] = {}
    with sessions() as session:
        for supplier, model, version, priority, count in session.execute(statement):
            # Two models that spell one queue name share its workers: their counts add up.
            counts.setdefault(model_queue(supplier, model, version), Counter())[priority] += count
    return counts
