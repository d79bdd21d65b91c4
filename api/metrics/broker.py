"""The metrics' reads of Redis: queue depths, reserved messages, the workers' recorded activity
and presence, in one pipeline (and two round trips for the workers' records)."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from redis import Redis
from redis.exceptions import RedisError

from api.queueing import UNACKED_KEY, queue_lists
from worker import activity
from worker.presence import WorkerPresence, live_workers

log = logging.getLogger(__name__)
# What a pipeline reply should be.
Reply = TypeVar("Reply", list[bytes], dict[bytes, bytes], int)


@dataclass(frozen=True)
class BrokerState:
    """What Redis holds for one scrape: queue depth per model queue, the recorded hashes raw."""

    queue_messages: Mapping[str, int]
    sub_tasks: Mapping[bytes, bytes]
    durations: Mapping[bytes, bytes]
    # Queue -> (live workers, busy workers); None when not asked for.
    workers: Mapping[str, tuple[int, int]] | None = None
    # Queue -> slots of its live workers (the largest when they differ); with `workers`.
    slots: Mapping[str, int] | None = None


@dataclass(frozen=True)
class BrokerReads:
    """Which of Redis's numbers a scrape needs."""

    queue_messages: bool = True
    sub_tasks: bool = True
    durations: bool = True
    workers: bool = True


def read_redis(
    redis: Redis, queues: Sequence[str], reads: BrokerReads = BrokerReads()
) -> BrokerState | None:
    """What `reads` asks of Redis, in one pipeline (and two round trips for the workers'
    records); None when Redis cannot be reached."""
    messages_wanted = reads.queue_messages
    lists = [queue_lists(queue) for queue in queues] if messages_wanted else []
    hashes = [
        key
        for wanted, key in (
            (reads.sub_tasks, activity.SUB_TASKS_KEY),
            (reads.durations, activity.DURATION_KEY),
        )
        if wanted
    ]
    try:
        with redis.pipeline(transaction=False) as pipe:
            pipe.ping()  # so that Redis is tried even when nothing below is asked for
            for names in lists:
                for name in names:
                    pipe.llen(name)
            if messages_wanted:
                pipe.hvals(UNACKED_KEY)
            for key in hashes:
                pipe.hgetall(key)
            # A key of the wrong type fails its own command only: raised, that error would hide
            # every other number, so it is read as empty below.
            replies = pipe.execute(raise_on_error=False)[1:]
        workers = slots = None
        if reads.workers:
            present = live_workers(redis)
            workers, slots = count_workers(present), count_slots(present)
    except RedisError as exc:
        log.warning(
            "Redis unreachable: no queue messages, workers nor sub-task activity this scrape: %s",
            exc,
        )
        return None
    lengths = replies[: sum(map(len, lists))]
    hash_replies = dict(zip(hashes, replies[len(replies) - len(hashes) :], strict=True))
    messages: dict[str, int] = {}
    if messages_wanted:
        reserved = reserved_per_queue(_reply(replies[len(lengths)], list, UNACKED_KEY))
        start = 0
        for queue, names in zip(queues, lists, strict=True):
            waiting = lengths[start : start + len(names)]
            messages[queue] = sum(_reply(n, int, queue) for n in waiting) + reserved[queue]
            start += len(names)
    sub_tasks, durations = (
        _reply(hash_replies.get(key, {}), dict, key)
        for key in (activity.SUB_TASKS_KEY, activity.DURATION_KEY)
    )
    return BrokerState(messages, sub_tasks, durations, workers, slots)


def count_workers(workers: Iterable[WorkerPresence]) -> dict[str, tuple[int, int]]:
    """Queue -> (live workers, busy ones)."""
    counts: dict[str, tuple[int, int]] = {}
    for worker in workers:
        live, busy = counts.get(worker.queue, (0, 0))
        counts[worker.queue] = (live + 1, busy + worker.busy)
    return counts


def count_slots(workers: Iterable[WorkerPresence]) -> dict[str, int]:
    """Queue -> slots per worker: the largest among its live workers (they differ only while a
    rollout changes the concurrency; the scaler then asks for fewer workers, never more)."""
    slots: dict[str, int] = {}
    for worker in workers:
        slots[worker.queue] = max(slots.get(worker.queue, 1), worker.slots)
    return slots


def _reply(reply: object, kind: type[Reply], key: str) -> Reply:
    """A pipeline reply of the expected kind, or that kind's empty value (an error reply)."""
    if isinstance(reply, kind):
        return reply
    log.warning("Redis answered %r for %s: read as empty", reply, key)
    return kind()


def routing_key(entry: bytes | str) -> str | None:
    """The routing key of an `unacked` entry, JSON [message, exchange, routing_key]; None for
    anything else, so one bad entry is skipped and never breaks a scrape."""
    try:
        value = json.loads(entry)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, nested beyond the parser
        return None
    if isinstance(value, list) and len(value) >= 3 and isinstance(value[2], str):
        return value[2]
    return None


def reserved_per_queue(entries: Iterable[bytes | str]) -> Counter[str]:
    """Reserved messages by routing key: Celery routes a model's tasks with its queue name."""
    return Counter(key for key in map(routing_key, entries) if key is not None)
