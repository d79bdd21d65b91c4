"""Sub-task activity recorded for Prometheus, kept in Redis so that it outlives the workers.

Workers come and go (KEDA scales a model to zero), so counters in their memory would vanish
with them: every transition is an increment of a hash in the broker's Redis instead, and the
API's collector (api/metrics.py) reads the hashes on each scrape. This module is the one
statement of that layout; the workers and the API both record through it.

- `oasis:metrics:sub_tasks_total`, field `<model>|<stage>|<status>`: how many sub-tasks of the
  model's stage reached the status (`oasis_sub_tasks_total`).
- `oasis:metrics:sub_task_duration_seconds` (`oasis_sub_task_duration_seconds`), per
  `<model>|<stage>`: field `...|le=<bound>` counts the run times in the bucket that ends at
  `bound` (not cumulative: the collector accumulates), `...|count` every run time, those above
  the last bound included, and `...|sum` their total in seconds (a float).

`model` is the model's queue name and may itself hold `|`: fields are split from the right.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import get_args

from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from api.store.statuses import RecordedStatus

log = logging.getLogger(__name__)

SUB_TASKS_KEY = "oasis:metrics:sub_tasks_total"
DURATION_KEY = "oasis:metrics:sub_task_duration_seconds"
SEPARATOR = "|"
BOUND_PREFIX = "le="
SUM = "sum"
COUNT = "count"

STATUSES: tuple[RecordedStatus, ...] = get_args(RecordedStatus)
STAGES = ("inputs", "losses")
# Upper bounds in seconds. Prometheus's default buckets stop at 10 s; sub-tasks run from under
# a second (the steps around the chunks) to hours (a loss chunk of a big event set), up to the
# 6 h visibility timeout beyond which a chunk would be delivered twice.
BUCKETS: tuple[float, ...] = (
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
    300,
    600,
    1200,
    1800,
    3600,
    7200,
    14400,
    21600,
)
# (stage, status) -> how many sub-tasks of one model reached the status.
Transitions = Mapping[tuple[str, RecordedStatus], int]
# Recording is best effort and must not hold a task up: one attempt, then it is given up.
SOCKET_TIMEOUT_SECONDS = 2.0


def connect(redis_url: str) -> Redis:
    """A client for recording and reading the metrics: one attempt with short timeouts (redis-py
    retries 10 times by default), so a Redis that is away costs a task or a scrape 2 s at most."""
    return Redis.from_url(
        redis_url,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 0),
    )


def counter_field(model: str, stage: str, status: RecordedStatus) -> str:
    return SEPARATOR.join((model, stage, status))


def bound_field(model: str, stage: str, bound: float) -> str:
    return SEPARATOR.join((model, stage, f"{BOUND_PREFIX}{bound:g}"))


def bucket_bound(seconds: float) -> float | None:
    """The smallest bound the run time fits under; None above the last (counted in +Inf only)."""
    return next((bound for bound in BUCKETS if seconds <= bound), None)


def record(redis: Redis, model: str, stage: str, status: RecordedStatus, n: int = 1) -> None:
    """`n` more sub-tasks of the model's stage reached `status`. Never raises."""
    record_many(redis, model, {(stage, status): n})


def record_many(redis: Redis, model: str, transitions: Transitions) -> None:
    """One HINCRBY per (stage, status), in one round trip. Never raises."""
    counts = {key: n for key, n in transitions.items() if n > 0}
    if not counts:
        return
    try:
        with redis.pipeline(transaction=False) as pipe:
            for (stage, status), n in counts.items():
                pipe.hincrby(SUB_TASKS_KEY, counter_field(model, stage, status), n)
            pipe.execute()
    except Exception:  # metrics are best effort: a task never fails for them
        log.warning("could not record %s of %s in Redis", dict(counts), model, exc_info=True)


def record_completed(redis: Redis, model: str, stage: str, seconds: float) -> None:
    """A sub-task completed after running `seconds`. Never raises.

    One MULTI/EXEC, so that a scrape never sees the run time without the COMPLETED, nor a bucket
    without its count.
    """
    seconds = max(seconds, 0.0)  # the clocks of two hosts may disagree a little
    prefix = SEPARATOR.join((model, stage))
    try:
        with redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(SUB_TASKS_KEY, counter_field(model, stage, "COMPLETED"), 1)
            bound = bucket_bound(seconds)
            if bound is not None:
                pipe.hincrby(DURATION_KEY, bound_field(model, stage, bound), 1)
            pipe.hincrby(DURATION_KEY, f"{prefix}{SEPARATOR}{COUNT}", 1)
            pipe.hincrbyfloat(DURATION_KEY, f"{prefix}{SEPARATOR}{SUM}", seconds)
            pipe.execute()
    except Exception:  # metrics are best effort: a task never fails for them
        log.warning("could not record a completed %s sub-task of %s", stage, model, exc_info=True)


def parse_counter_field(field: str) -> tuple[str, str, RecordedStatus] | None:
    """(model, stage, status) of a field of SUB_TASKS_KEY; None for one not written here."""
    parts = field.rsplit(SEPARATOR, 2)
    if len(parts) != 3:
        return None
    model, stage, status = parts
    if not model or stage not in STAGES or status not in STATUSES:
        return None
    return model, stage, status


def parse_duration_field(field: str) -> tuple[str, str, float | str] | None:
    """(model, stage, part) of a field of DURATION_KEY: part is a bucket's bound, SUM or COUNT;
    None for one not written here."""
    parts = field.rsplit(SEPARATOR, 2)
    if len(parts) != 3:
        return None
    model, stage, part = parts
    if not model or stage not in STAGES:
        return None
    if part in (SUM, COUNT):
        return model, stage, part
    if not part.startswith(BOUND_PREFIX):
        return None
    try:
        bound = float(part.removeprefix(BOUND_PREFIX))
    except ValueError:
        return None
    return (model, stage, bound) if math.isfinite(bound) else None
