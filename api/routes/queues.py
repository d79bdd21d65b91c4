"""/v2/queue/ and /v2/queue-status/: the model queues with activity, as a running OasisPlatform
lists them (only queues with a worker, a sub-task or a message; model URLs relative)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from flask import current_app, jsonify
from flask_openapi3 import APIBlueprint, Tag
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from api import db, serialize
from api.queueing import queue_depth
from api.replies import Reply
from api.schemas import BEARER, PROTECTED, QueueList, QueueOut, QueueStatus, format_timestamp
from api.store.orm import Analysis, Model
from api.store.statuses import ACTIVE
from worker.presence import live_workers

# A queue is listed while one of these is above 0.
ACTIVITY = ("pending_count", "queued_count", "running_count", "queue_message_count", "worker_count")
bp = APIBlueprint(
    "queues",
    __name__,
    url_prefix="/v2",
    abp_tags=[Tag(name="queues")],
    abp_security=BEARER,
    abp_responses=PROTECTED,
)


@bp.get("/queue/", responses={200: QueueList})
def queues() -> Reply:
    """Each model queue with activity: sub-task counts from the database, messages from Redis."""
    return jsonify([entry for entry, _ in _queues()])


@bp.get("/queue-status/", responses={200: QueueStatus})
def queue_status() -> Reply:
    """Queues with their active analyses, in the shape of the platform's websocket message."""
    content = [
        {
            "queue": entry,
            "analyses": [
                {"analysis": _ws_analysis(a), "updated_tasks": []}
                for a in analyses
                if a.status in ACTIVE
            ],
        }
        for entry, analyses in _queues()
    ]
    return jsonify(
        {
            "time": format_timestamp(datetime.now(UTC)),
            "type": "queue_status.updated",
            "status": "SUCCESS",
            "content": content,
        }
    )


def _queues() -> list[tuple[dict[str, Any], list[Analysis]]]:
    """Each model queue with activity (a worker, a sub-task pending, queued or running, or a
    message), as the platform lists the queues its broker knows: an idle queue is left out, so
    a model absent from the answer has no work."""
    models = db.session().scalars(select(Model).order_by(Model.id)).all()
    analyses = (
        db.session()
        .scalars(select(Analysis).options(selectinload(Analysis.sub_tasks)).order_by(Analysis.id))
        .all()
    )
    workers = _worker_counts()
    # Sub-task rows by queue and status, as the platform counts them.
    counts = Counter((t.queue_name, t.status) for a in analyses for t in a.sub_tasks)
    result = []
    for model in models:
        queue = model.queue_name
        own = [a for a in analyses if a.model_id == model.id]
        entry = QueueOut(
            name=queue,
            pending_count=counts[queue, "PENDING"],
            queued_count=counts[queue, "QUEUED"],
            running_count=counts[queue, "STARTED"],
            queue_message_count=queue_depth(queue),
            worker_count=workers[queue],
            models=[],
        ).model_dump(mode="json")
        entry["models"] = [serialize.queue_model(model)]
        if any(entry[field] for field in ACTIVITY):
            result.append((entry, own))
    return result


def _worker_counts() -> Counter[str]:
    """Live workers per queue, from their records of presence; none when Redis is away."""
    redis: Redis = current_app.extensions["redis"]
    try:
        return Counter(worker.queue for worker in live_workers(redis))
    except RedisError:
        current_app.logger.warning("Redis unreachable while reading the live workers")
        return Counter()


def _ws_analysis(row: Analysis) -> dict[str, Any]:
    return {
        "name": row.name,
        "id": row.id,
        "portfolio": row.portfolio_id,
        "model": row.model_id,
        "status": row.status,
        "priority": row.priority,
        "analysis_chunks": row.analysis_chunks,
        "lookup_chunks": row.lookup_chunks,
        "sub_task_count": len(row.sub_tasks),
        # Every queue its sub-tasks use, done ones included, as the platform lists them.
        "queue_names": sorted({t.queue_name for t in row.sub_tasks}),
        "status_count": serialize.status_count(row.sub_tasks).model_dump(),
    }
