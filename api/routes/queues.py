"""/v2/queue/ and /v2/queue-status/: each model's queue with its work, as OasisPlatform shows it."""

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
from api.store.statuses import ACTIVE, IN_QUEUE
from worker.presence import live_workers

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
    """Every model's queue: sub-task counts from the database, message count from Redis."""
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
    models = db.session().scalars(select(Model).order_by(Model.id)).all()
    analyses = (
        db.session()
        .scalars(select(Analysis).options(selectinload(Analysis.sub_tasks)).order_by(Analysis.id))
        .all()
    )
    workers = _worker_counts()
    result = []
    for model in models:
        own = [a for a in analyses if a.model_id == model.id]
        counts = Counter(t.status for a in own for t in a.sub_tasks)
        entry = QueueOut(
            name=model.queue_name,
            pending_count=counts["PENDING"],
            queued_count=counts["QUEUED"],
            running_count=counts["STARTED"],
            queue_message_count=queue_depth(model.queue_name),
            worker_count=workers[model.queue_name],
            models=[],
        ).model_dump(mode="json")
        entry["models"] = [serialize.model(model)]
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
        "queue_names": sorted({t.queue_name for t in row.sub_tasks if t.status in IN_QUEUE}),
        "status_count": serialize.status_count(row.sub_tasks).model_dump(),
    }
