"""The collector the API registers: every family read fresh when scraped, and only what a scrape
asks for.

A scrape may ask for some samples only, as Prometheus's `name[]` parameter does (`exposition`):
the collector then reads only what those need, so the scaler's frequent scrape of a few gauges
never reads the sub-task hashes, which grow with every model's activity.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from contextvars import ContextVar

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from redis import Redis
from sqlalchemy.orm import Session, sessionmaker

from api.metrics.broker import BrokerReads, read_redis
from api.metrics.database import read_models, read_priorities
from api.metrics.families import (
    duration_histogram,
    model_families,
    priority_family,
    redis_up,
    sub_task_counter,
    worker_families,
)
from scaler.metric_names import (
    ANALYSES_BY_PRIORITY,
    BUSY_WORKERS,
    DURATION,
    QUEUE_MESSAGES,
    SUB_TASKS,
    WORKER_SLOTS,
    WORKERS,
)

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
            *worker_families([], {}, {}),
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
        reads = BrokerReads(
            queue_messages=_wants(wanted, QUEUE_MESSAGES),
            sub_tasks=_wants(wanted, SUB_TASKS_FAMILY),
            durations=_wants(wanted, DURATION),
            workers=any(_wants(wanted, name) for name in (WORKERS, BUSY_WORKERS, WORKER_SLOTS)),
        )
        state = read_redis(self._redis, queues, reads)
        families = model_families(
            [models[queue] for queue in queues], None if state is None else state.queue_messages
        )
        if state is not None and state.workers is not None:
            families += worker_families(queues, state.workers, state.slots or {})
        yield from (family for family in families if _wants(wanted, family.name))
        if _wants(wanted, ANALYSES_BY_PRIORITY):
            yield priority_family(read_priorities(self._sessions))
        yield redis_up(up=state is not None)
        if state is not None:
            if _wants(wanted, SUB_TASKS_FAMILY):
                yield sub_task_counter(state.sub_tasks)
            if _wants(wanted, DURATION):
                yield duration_histogram(state.durations)


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
