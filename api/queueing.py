"""The API's side of the task queue: publishing main tasks and reading queue depth."""

from __future__ import annotations

from celery import Celery
from flask import Flask, current_app
from kombu.exceptions import KombuError
from redis import Redis
from redis.exceptions import RedisError

from api.errors import unavailable

# Celery on Redis keeps a queue's priority levels in extra lists named after the queue.
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (3, 6, 9)
# Messages a worker has taken and not yet acknowledged (kombu's Redis transport): one hash for
# every queue, field = delivery tag, value = JSON [message, exchange, routing_key].
UNACKED_KEY = "unacked"
# Publishing must not hang a request when Redis is away: a few quick retries, then 503.
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


def init_app(app: Flask, redis_url: str) -> None:
    celery = Celery("oasis-autoscaler-api", broker=redis_url)
    celery.conf.broker_connection_timeout = 2
    celery.conf.broker_transport_options = {"socket_timeout": 2, "socket_connect_timeout": 2}
    app.extensions["celery"] = celery
    app.extensions["redis"] = Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)


def publish(task: str, analysis_id: int, queue: str) -> str:
    """Put `task` for the analysis on `queue`; 503 when the broker cannot be reached."""
    celery: Celery = current_app.extensions["celery"]
    try:
        result = celery.send_task(
            task, args=[analysis_id], queue=queue, retry=True, retry_policy=PUBLISH_RETRY
        )
    except (KombuError, OSError, RedisError) as exc:
        raise unavailable(f"The task queue is unreachable, nothing was queued: {exc}") from None
    return str(result.id)


def revoke(task_ids: list[str]) -> None:
    """Ask every worker to drop these tasks and stop the ones running (best effort)."""
    if not task_ids:
        return
    celery: Celery = current_app.extensions["celery"]
    try:
        celery.control.revoke(task_ids, terminate=True, signal="SIGTERM")
    except (KombuError, OSError, RedisError) as exc:
        current_app.logger.warning("could not revoke %d tasks: %s", len(task_ids), exc)


def queue_depth(queue: str) -> int:
    """Messages waiting on `queue`, its priority lists included; 0 when Redis is unreachable."""
    redis: Redis = current_app.extensions["redis"]
    try:
        with redis.pipeline(transaction=False) as pipe:
            for name in queue_lists(queue):
                pipe.llen(name)
            return sum(int(n) for n in pipe.execute())
    except RedisError:
        current_app.logger.warning("Redis unreachable while reading the depth of %s", queue)
        return 0


def queue_lists(queue: str) -> list[str]:
    """The Redis lists that hold `queue`'s waiting messages: its own and its priority lists."""
    return [queue] + [f"{queue}{PRIORITY_SEPARATOR}{step}" for step in PRIORITY_STEPS]
