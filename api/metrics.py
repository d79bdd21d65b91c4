"""The platform's Prometheus metrics, computed when scraped (docs/metrics.md is the contract).

`ModelCollector` reads everything fresh on each scrape in a fixed number of round trips,
however many models there are: three queries (the models, analyses per model, pending
sub-tasks per model) and one Redis pipeline (every model queue's lists, the reserved messages,
and the hashes the workers record their sub-tasks' activity in, worker/telemetry.py), plus two
round trips for the workers' records of presence (worker/presence.py).

A scrape may ask for some samples only, as Prometheus's `name[]` parameter does (`exposition`):
the collector then reads only what those need, so the scaler's frequent scrape of a few gauges
never reads the sub-task hashes, which grow with every model's activity.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TypeVar, cast

from flask import Flask, current_app
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, load_only, sessionmaker

from api.configurations import stored
from api.orm import Analysis, Model, SubTask
from api.queueing import UNACKED_KEY, queue_lists
from scaler.configuration import ScalingConfiguration
from worker import telemetry
from worker.presence import WorkerPresence, live_workers
from worker.records import IN_QUEUE, INPUTS, LOSSES

log = logging.getLogger(__name__)
# What a pipeline reply should be, and what a value in a hash is read as.
Reply = TypeVar("Reply", list[bytes], dict[bytes, bytes], int)
Number = TypeVar("Number", int, float)
# A bucket's `le` as prometheus_client's own histograms spell it (30 is "30.0"); it is untyped.
_le = cast(Callable[[float], str], floatToGoString)

# An analysis is a main task of its model while queued and not yet split, or while its stage's
# sub-tasks are queued or running.
MAIN_TASK_STATUSES = (INPUTS.queued, INPUTS.started, LOSSES.queued, LOSSES.started)
# app.extensions key of the Redis client that records and reads the metrics.
REDIS_EXTENSION = "metrics_redis"

ANALYSES = "oasis_model_analyses"
PENDING = "oasis_model_pending_sub_tasks"
QUEUE_MESSAGES = "oasis_model_queue_messages"
SCALING_INFO = "oasis_model_scaling_info"
REDIS_UP = "oasis_redis_up"
SUB_TASKS = "oasis_sub_tasks_total"
DURATION = "oasis_sub_task_duration_seconds"
WORKERS = "oasis_model_workers"
BUSY_WORKERS = "oasis_model_busy_workers"
ANALYSES_BY_PRIORITY = "oasis_model_analyses_by_priority"
# prometheus_client names a counter's family without its `_total`.
SUB_TASKS_FAMILY = SUB_TASKS.removesuffix("_total")
# The sample names of a family of each type, as prometheus_client's registry derives them.
TYPE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "info": ("_info",),
}
# The sample names the current scrape asked for (Prometheus's `name[]`); None: every one.
_asked: ContextVar[frozenset[str] | None] = ContextVar("metrics_asked", default=None)
# The scaling configuration's numbers, one gauge each: gauge name -> field.
SCALING_GAUGES = {
    "oasis_model_worker_count_fixed": "worker_count_fixed",
    "oasis_model_worker_count_min": "worker_count_min",
    "oasis_model_worker_count_max": "worker_count_max",
    "oasis_model_chunks_per_worker": "chunks_per_worker",
}
HELP = {
    ANALYSES: "Main tasks of the model: analyses queued and not yet split, or whose current "
    "stage has sub-tasks queued or running.",
    PENDING: "Sub-tasks of the model pending, queued or running.",
    QUEUE_MESSAGES: "Messages of the model's Redis queue: the list, its priority lists and the "
    "reserved (unacknowledged) messages routed to it.",
    SCALING_INFO: "Always 1; strategy is the model's scaling_strategy.",
    **{
        name: f"The model's scaling_configuration.{name_of} (defaults filled in)."
        for name, name_of in SCALING_GAUGES.items()
    },
    REDIS_UP: "1 when this scrape read Redis, 0 when Redis could not be reached (the queue "
    "messages and sub-task activity are then left out).",
    SUB_TASKS: "Sub-tasks that reached each status.",
    DURATION: "Run time of completed sub-tasks (end - start).",
    WORKERS: "Live workers consuming the model's queue (their records of presence in Redis).",
    BUSY_WORKERS: "Live workers of the model's queue running a task.",
    ANALYSES_BY_PRIORITY: "Main tasks of the model (as oasis_model_analyses) by their priority "
    "(1-10); only priorities with at least one.",
}


@dataclass(frozen=True)
class ModelState:
    """What the database says of one model queue."""

    queue: str
    scaling: ScalingConfiguration
    analyses: int
    pending: int


@dataclass(frozen=True)
class RedisState:
    """What Redis holds for one scrape: queue depth per model queue, the recorded hashes raw."""

    queue_messages: Mapping[str, int]
    sub_tasks: Mapping[bytes, bytes]
    durations: Mapping[bytes, bytes]
    # Queue -> (live workers, busy workers); None when not asked for.
    workers: Mapping[str, tuple[int, int]] | None = None


def init_app(app: Flask, redis_url: str, registry: CollectorRegistry) -> None:
    """Publish the platform's metrics on `registry`; the API's own records go through the same
    Redis client (`telemetry_redis`)."""
    redis = telemetry.connect(redis_url)
    app.extensions[REDIS_EXTENSION] = redis
    ModelCollector(app.extensions["db_sessions"], redis, registry=registry)


def telemetry_redis() -> Redis:
    """The current app's client for recording sub-task activity (worker/telemetry.py)."""
    redis: Redis = current_app.extensions[REDIS_EXTENSION]
    return redis


class ModelCollector:
    """Every model's gauges and the workers' recorded activity, read when scraped."""

    def __init__(
        self, sessions: sessionmaker[Session], redis: Redis, *, registry: CollectorRegistry | None
    ) -> None:
        self._sessions = sessions
        self._redis = redis
        if registry is not None:
            registry.register(self)

    def describe(self) -> list[Metric]:
        """The families without samples, read from nothing: the registry uses the names to
        refuse a second collector of the same metrics."""
        return [
            *model_families([], {}),
            redis_up(up=False),
            sub_task_counter({}),
            duration_histogram({}),
            *worker_families([], {}),
            priority_family({}),
        ]

    def families_for(self, names: Collection[str] | None) -> frozenset[str] | None:
        """The names of this collector's families with a sample among `names` (None: all)."""
        if names is None:
            return None
        return frozenset(
            family.name for family in self.describe() if sample_names(family) & set(names)
        )

    def collect(self) -> Iterator[Metric]:
        wanted = self.families_for(_asked.get())
        # Without the database no model is known: its errors fail the scrape (`up` is 0).
        models = read_models(self._sessions)
        queues = sorted(models)
        state = read_redis(self._redis, queues, wanted)
        families = model_families(
            [models[queue] for queue in queues], None if state is None else state.queue_messages
        )
        if state is not None and state.workers is not None:
            families += worker_families(queues, state.workers)
        yield from (family for family in families if _wants(wanted, family.name))
        if _wants(wanted, ANALYSES_BY_PRIORITY):
            yield priority_family(read_priorities(self._sessions))
        yield redis_up(up=state is not None)
        if state is not None:
            if _wants(wanted, SUB_TASKS_FAMILY):
                yield sub_task_counter(state.sub_tasks)
            if _wants(wanted, DURATION):
                yield duration_histogram(state.durations)


def read_models(sessions: sessionmaker[Session]) -> dict[str, ModelState]:
    """Every model by queue name, with its work counted by two grouped queries (idle: 0)."""
    with sessions() as session:
        models = session.scalars(
            select(Model)
            .options(
                load_only(
                    Model.supplier_id,
                    Model.model_id,
                    Model.version_id,
                    Model.scaling_configuration,
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
        pending = _per_model(
            session,
            select(Analysis.model_id, func.count())
            .select_from(SubTask)
            .join(Analysis, SubTask.analysis_id == Analysis.id)
            .where(SubTask.status.in_(IN_QUEUE))
            .group_by(Analysis.model_id),
        )
        states: dict[str, ModelState] = {}
        for model in models:
            state = ModelState(
                queue=model.queue_name,
                scaling=stored(
                    ScalingConfiguration, model.scaling_configuration, f"model {model.id}"
                ),
                analyses=analyses.get(model.id, 0),
                pending=pending.get(model.id, 0),
            )
            states[state.queue] = _same_queue(states.get(state.queue), state)
        return states


def _per_model(session: Session, statement: Select[int, int]) -> dict[int, int]:
    return {model_id: count for model_id, count in session.execute(statement)}


def _same_queue(first: ModelState | None, other: ModelState) -> ModelState:
    """Two models whose ids join to the same queue name (`a-b`,`c` and `a`,`b-c`) share one
    queue and its workers: their work adds up, and the first registered one's configuration
    holds. Publishing both would repeat a series, which Prometheus refuses."""
    if first is None:
        return other
    log.warning("two models share the queue %s: their work is published as one", other.queue)
    return ModelState(
        first.queue, first.scaling, first.analyses + other.analyses, first.pending + other.pending
    )


def read_redis(
    redis: Redis, queues: Sequence[str], wanted: Collection[str] | None = None
) -> RedisState | None:
    """What the `wanted` families (None: all) need from Redis, in one pipeline (and two round
    trips for the workers' records); None when Redis cannot be reached."""
    messages_wanted = _wants(wanted, QUEUE_MESSAGES)
    lists = [queue_lists(queue) for queue in queues] if messages_wanted else []
    hashes = [
        key
        for family, key in (
            (SUB_TASKS_FAMILY, telemetry.SUB_TASKS_KEY),
            (DURATION, telemetry.DURATION_KEY),
        )
        if _wants(wanted, family)
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
        workers = None
        if _wants(wanted, WORKERS) or _wants(wanted, BUSY_WORKERS):
            workers = count_workers(live_workers(redis))
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
        for key in (telemetry.SUB_TASKS_KEY, telemetry.DURATION_KEY)
    )
    return RedisState(messages, sub_tasks, durations, workers)


def _wants(wanted: Collection[str] | None, family: str) -> bool:
    return wanted is None or family in wanted


def sample_names(family: Metric) -> set[str]:
    """The names of the samples a family of its type holds, which `name[]` selects."""
    return {family.name, *(family.name + suffix for suffix in TYPE_SUFFIXES.get(family.type, ()))}


def exposition(registry: CollectorRegistry, names: Sequence[str]) -> bytes:
    """The registry's text exposition; given `names` (Prometheus's `name[]`), of only the
    samples so named, with ModelCollector reading only what those need."""
    if not names:
        return generate_latest(registry)
    token = _asked.set(frozenset(names))
    try:
        return generate_latest(registry.restricted_registry(names))
    finally:
        _asked.reset(token)


def count_workers(workers: Iterable[WorkerPresence]) -> dict[str, tuple[int, int]]:
    """Queue -> (live workers, busy ones)."""
    counts: dict[str, tuple[int, int]] = {}
    for worker in workers:
        live, busy = counts.get(worker.queue, (0, 0))
        counts[worker.queue] = (live + 1, busy + worker.busy)
    return counts


def worker_families(queues: Sequence[str], workers: Mapping[str, tuple[int, int]]) -> list[Metric]:
    """Live and busy workers of every model queue (0 for a queue without any)."""
    live = GaugeMetricFamily(WORKERS, HELP[WORKERS], labels=["model"])
    busy = GaugeMetricFamily(BUSY_WORKERS, HELP[BUSY_WORKERS], labels=["model"])
    for queue in queues:
        counts = workers.get(queue, (0, 0))
        live.add_metric([queue], counts[0])
        busy.add_metric([queue], counts[1])
    return [live, busy]


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


def model_families(
    models: Sequence[ModelState], queue_messages: Mapping[str, int] | None
) -> list[Metric]:
    """The per-model gauges; `oasis_model_queue_messages` only when Redis was read."""
    gauges = {
        name: GaugeMetricFamily(name, HELP[name], labels=["model"])
        for name in (ANALYSES, PENDING, QUEUE_MESSAGES, *SCALING_GAUGES)
    }
    info = GaugeMetricFamily(SCALING_INFO, HELP[SCALING_INFO], labels=["model", "strategy"])
    for model in models:
        gauges[ANALYSES].add_metric([model.queue], model.analyses)
        gauges[PENDING].add_metric([model.queue], model.pending)
        if queue_messages is not None:
            gauges[QUEUE_MESSAGES].add_metric([model.queue], queue_messages.get(model.queue, 0))
        info.add_metric([model.queue, model.scaling.scaling_strategy.value], 1)
        for name, name_of in SCALING_GAUGES.items():
            gauges[name].add_metric([model.queue], getattr(model.scaling, name_of))
    if queue_messages is None:
        del gauges[QUEUE_MESSAGES]
    return [*gauges.values(), info]


def redis_up(*, up: bool) -> GaugeMetricFamily:
    return GaugeMetricFamily(REDIS_UP, HELP[REDIS_UP], value=1 if up else 0)


def sub_task_counter(fields: Mapping[bytes, bytes]) -> CounterMetricFamily:
    """`oasis_sub_tasks_total` from the hash's fields; a field or value not written by
    worker/telemetry.py is skipped."""
    family = CounterMetricFamily(SUB_TASKS, HELP[SUB_TASKS], labels=["model", "stage", "status"])
    counts: dict[tuple[str, str, str], int] = {}
    for raw_field, raw_value in fields.items():
        text = _text(raw_field)
        key = None if text is None else telemetry.parse_counter_field(text)
        value = _number(raw_value, int)
        if key is not None and value is not None and value >= 0:
            counts[key] = value
    for labels in sorted(counts):
        family.add_metric(list(labels), counts[labels])
    return family


@dataclass
class Durations:
    """One (model, stage)'s recorded run times: bucket counters by bound, count and sum."""

    buckets: dict[float, int] = field(default_factory=dict)
    count: int = 0
    total: float = 0.0


def duration_histogram(fields: Mapping[bytes, bytes]) -> HistogramMetricFamily:
    """`oasis_sub_task_duration_seconds` from the hash's fields; a field or value not written
    by worker/telemetry.py is skipped."""
    series: dict[tuple[str, str], Durations] = {}
    for raw_field, raw_value in fields.items():
        text = _text(raw_field)
        parsed = None if text is None else telemetry.parse_duration_field(text)
        if parsed is None:
            continue
        model, stage, part = parsed
        durations = series.setdefault((model, stage), Durations())
        if part == telemetry.SUM:
            total = _number(raw_value, float)
            if total is not None and math.isfinite(total):
                durations.total = total
            continue
        count = _number(raw_value, int)
        if count is None or count < 0:
            continue
        if part == telemetry.COUNT:
            durations.count = count
        elif isinstance(part, float):
            durations.buckets[part] = durations.buckets.get(part, 0) + count
    family = HistogramMetricFamily(DURATION, HELP[DURATION], labels=["model", "stage"])
    for (model, stage), durations in sorted(series.items()):
        buckets = cumulative_buckets(durations.buckets, durations.count)
        family.add_metric([model, stage], buckets, durations.total)
    return family


def cumulative_buckets(
    recorded: Mapping[float, int], count: int, bounds: Sequence[float] = telemetry.BUCKETS
) -> list[tuple[str, float]]:
    """Prometheus's buckets: each counts the run times at or under its bound, +Inf all of them.

    `recorded` holds the workers' counters by bound, each counting its bucket only. A bound that
    is not one of `bounds` (recorded under other buckets) counts from the first bound above it
    on. +Inf is the recorded count, and never less than the buckets under it, so the family is
    valid whatever the hash holds.
    """
    ordered = sorted(recorded.items())
    buckets: list[tuple[str, float]] = []
    running, taken = 0, 0
    for bound in sorted(bounds):
        while taken < len(ordered) and ordered[taken][0] <= bound:
            running += ordered[taken][1]
            taken += 1
        buckets.append((_le(bound), float(running)))
    buckets.append(("+Inf", float(max(count, sum(recorded.values())))))
    return buckets


def _text(raw: bytes | str) -> str | None:
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return None


def _number(raw: bytes | str, kind: type[Number]) -> Number | None:
    try:
        return kind(raw)
    except ValueError:
        return None


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
            counts.setdefault(f"{supplier}-{model}-{version}", Counter())[priority] += count
    return counts


def priority_family(counts: Mapping[str, Mapping[int, int]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        ANALYSES_BY_PRIORITY, HELP[ANALYSES_BY_PRIORITY], labels=["model", "priority"]
    )
    for queue in sorted(counts):
        for priority, count in sorted(counts[queue].items()):
            family.add_metric([queue, str(priority)], count)
    return family
