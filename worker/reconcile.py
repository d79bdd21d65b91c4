"""Putting back sub-tasks the broker lost: a queued sub-task no message and no worker holds.

The database says a sub-task is QUEUED from the moment its message is published
(`records.mark_queued`) until a worker starts it. Its message is then on its queue's Redis lists,
or in kombu's `unacked` hash (a worker took it: it runs it, or holds it for a countdown). A
Redis that restarts without its data (no persistence, a replaced server) loses both, and nothing
would ever run the sub-task: its analysis would stay `*_STARTED` for ever.

So every worker runs `reconcile` now and then (`Reconciler`, a thread of its main process). A
pass, under a Redis lock so that one worker at a time does it:

1. reads the sub-tasks the database holds as QUEUED with a kept message;
2. reads every message on their queues and in `unacked`, by task id;
3. publishes again, exactly as it was first published (same id, same chain and chord), each
   sub-task that was missing in this pass and in the one before. Twice, because a worker takes a
   message off its list an instant before kombu records it in `unacked`; a pass can fall in
   between, the next cannot. The set of suspects lives in Redis beside the lock.

A sub-task put back is then on its queue, so later passes see it and leave it. A duplicate, if
one ever slipped through, would change nothing: every step is idempotent and a worker skips a
sub-task its analysis has moved past.

What it does not put back: a chord's count of finished chunks, kept by Celery in the same Redis.
With persistence (the local stack's and the dev overlay's Redis keep an append-only file) a
restart loses neither, and a chunk that ends while the broker is away waits for it to count
itself (worker/result_backend.py); after a loss of the whole broker, a stage whose chunks all
finished before the loss waits for its join until the analysis is queued again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from kombu.transport.redis import Channel
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.store.orm import SubTask

log = logging.getLogger(__name__)

LOCK_KEY: Final = "oasis:reconcile:lock"
SUSPECTS_KEY: Final = "oasis:reconcile:suspects"
# A pass holds the lock at most this long (it is released when the pass ends).
LOCK_SECONDS: Final = 60
# The message properties a publication carries again.
KEPT_PROPERTIES: Final = ("correlation_id", "reply_to", "priority")

Publish = Callable[[dict[str, Any]], None]


def message_json(
    body: Any,
    headers: dict[str, Any] | None,
    properties: dict[str, Any] | None,
    exchange: str | None,
    routing_key: str | None,
) -> str | None:
    """The message as Celery is about to publish it, as JSON; None if it cannot be kept."""
    kept = {k: v for k, v in (properties or {}).items() if k in KEPT_PROPERTIES}
    try:
        return json.dumps(
            {
                "body": body,
                "headers": headers or {},
                "properties": kept,
                "exchange": exchange or "",
                "routing_key": routing_key or "",
            }
        )
    except (TypeError, ValueError):
        log.warning("the message of sub-task %s cannot be kept", (headers or {}).get("id"))
        return None


def queue_lists(queue: str) -> list[str]:
    """The Redis lists of `queue`: kombu's one per priority step (step 0 is the queue itself)."""
    return [
        queue if step == 0 else f"{queue}{Channel.sep}{step}" for step in Channel.priority_steps
    ]


def held_ids(redis: Redis, queues: Iterable[str]) -> set[str]:
    """The task ids of every message on `queues` and of every message a worker holds."""
    found: set[str] = set()
    for queue in queues:
        for name in queue_lists(queue):
            found.update(_id(raw) for raw in redis.lrange(name, 0, -1))
    for raw in redis.hvals(Channel.unacked_key):
        try:  # [message, exchange, routing_key]
            found.add(str(json.loads(raw)[0].get("headers", {}).get("id", "")))
        except (ValueError, IndexError, TypeError, AttributeError):
            continue
    found.discard("")
    return found


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _id(raw: bytes | str) -> str:
    try:
        return str(json.loads(raw).get("headers", {}).get("id", ""))
    except (ValueError, AttributeError):
        return ""


@dataclass(frozen=True)
class Queued:
    task_id: str
    queue: str
    message: str


def queued_sub_tasks(sessions: sessionmaker[Session]) -> list[Queued]:
    with sessions() as session:
        rows = session.execute(
            select(SubTask.task_id, SubTask.queue_name, SubTask.message).where(
                (SubTask.status == "QUEUED") & SubTask.message.is_not(None)
            )
        ).all()
    return [
        Queued(task_id, queue, message) for task_id, queue, message in rows if task_id and message
    ]


def still_queued(sessions: sessionmaker[Session], task_id: str) -> bool:
    with sessions() as session:
        status = session.scalar(select(SubTask.status).where(SubTask.task_id == task_id))
    return status == "QUEUED"


def reconcile(sessions: sessionmaker[Session], redis: Redis, publish: Publish) -> list[str]:
    """One pass (see the module's doc); returns the ids of the sub-tasks published again."""
    lock = redis.lock(LOCK_KEY, timeout=LOCK_SECONDS)
    if not lock.acquire(blocking=False):
        return []  # another worker's pass is running
    try:
        queued = queued_sub_tasks(sessions)
        held = held_ids(redis, {q.queue for q in queued})
        missing = {q.task_id: q for q in queued if q.task_id not in held}
        suspects = {_text(raw) for raw in redis.smembers(SUSPECTS_KEY)}
        again = [q for task_id, q in sorted(missing.items()) if task_id in suspects]
        published = []
        for lost in again:
            if not still_queued(sessions, lost.task_id):
                continue
            publish(json.loads(lost.message))
            published.append(lost.task_id)
            log.warning(
                "sub-task %s was queued on %s but no broker message or worker held it: "
                "published again",
                lost.task_id,
                lost.queue,
            )
        pipeline = redis.pipeline()
        pipeline.delete(SUSPECTS_KEY)
        waiting = sorted(set(missing) - set(published))
        if waiting:
            pipeline.sadd(SUSPECTS_KEY, *waiting)
        pipeline.execute()
        return published
    finally:
        # Expired, or the broker went away: the timeout frees it.
        with contextlib.suppress(RedisError):
            lock.release()


class Reconciler:
    """Runs `reconcile` every `seconds` in a thread of the worker's main process."""

    def __init__(
        self, sessions: sessionmaker[Session], redis: Redis, publish: Publish, seconds: float
    ) -> None:
        self.sessions, self.redis, self.publish, self.seconds = sessions, redis, publish, seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="reconcile", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.seconds):
            try:
                reconcile(self.sessions, self.redis, self.publish)
            except Exception as error:  # the broker or the database is away: next time
                log.info("reconciling the queued sub-tasks failed, tried again later: %s", error)
