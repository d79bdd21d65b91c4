"""The metric families the API publishes, built from what was read (names: scaler/metric_names.py).

A value in the workers' hashes that worker/activity.py did not write is skipped, never fatal.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, cast

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from api.metrics.database import StoredModel
from scaler.metric_names import (
    ANALYSES,
    ANALYSES_BY_PRIORITY,
    BUSY_WORKERS,
    DURATION,
    HELP,
    JOINING_CHUNKS,
    PENDING,
    QUEUE_MESSAGES,
    QUEUED,
    QUEUED_OR_RUNNING,
    RECORDED,
    REDIS_UP,
    SCALING_GAUGES,
    SCALING_INFO,
    STAGE_GAP,
    SUB_TASKS,
    UNQUEUED_CHUNKS,
    WORK_GAUGES,
    WORKER_SLOTS,
    WORKERS,
)
from worker import activity

# What a value in a hash is read as.
Number = TypeVar("Number", int, float)
# A bucket's `le` as prometheus_client's own histograms spell it (30 is "30.0"); it is untyped.
_le = cast(Callable[[float], str], floatToGoString)


def model_families(
    models: Sequence[StoredModel], queue_messages: Mapping[str, int] | None
) -> list[Metric]:
    """The per-model gauges; `oasis_model_queue_messages` only when Redis was read."""
    gauges = {
        name: GaugeMetricFamily(name, HELP[name], labels=["model"])
        for name in (*WORK_GAUGES, STAGE_GAP, QUEUE_MESSAGES)
    } | {name: GaugeMetricFamily(name, HELP[name], labels=["model"]) for name in SCALING_GAUGES}
    info = GaugeMetricFamily(SCALING_INFO, HELP[SCALING_INFO], labels=["model", "strategy"])
    for model in models:
        gauges[ANALYSES].add_metric([model.queue], model.analyses)
        gauges[PENDING].add_metric([model.queue], model.pending)
        gauges[RECORDED].add_metric([model.queue], model.recorded)
        gauges[QUEUED_OR_RUNNING].add_metric([model.queue], model.queued_or_running)
        gauges[QUEUED].add_metric([model.queue], model.queued)
        gauges[UNQUEUED_CHUNKS].add_metric([model.queue], model.unqueued_chunks)
        gauges[JOINING_CHUNKS].add_metric([model.queue], model.joining_chunks)
        if model.stage_gap is not None:
            gauges[STAGE_GAP].add_metric([model.queue], model.stage_gap)
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
    worker/activity.py is skipped."""
    family = CounterMetricFamily(SUB_TASKS, HELP[SUB_TASKS], labels=["model", "stage", "status"])
    counts: dict[tuple[str, str, str], int] = {}
    for raw_field, raw_value in fields.items():
        text = _text(raw_field)
        key = None if text is None else activity.parse_counter_field(text)
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
    by worker/activity.py is skipped."""
    series: dict[tuple[str, str], Durations] = {}
    for raw_field, raw_value in fields.items():
        text = _text(raw_field)
        parsed = None if text is None else activity.parse_duration_field(text)
        if parsed is None:
            continue
        model, stage, part = parsed
        durations = series.setdefault((model, stage), Durations())
        if part == activity.SUM:
            total = _number(raw_value, float)
            if total is not None and math.isfinite(total):
                durations.total = total
            continue
        count = _number(raw_value, int)
        if count is None or count < 0:
            continue
        if part == activity.COUNT:
            durations.count = count
        elif isinstance(part, float):
            durations.buckets[part] = durations.buckets.get(part, 0) + count
    family = HistogramMetricFamily(DURATION, HELP[DURATION], labels=["model", "stage"])
    for (model, stage), durations in sorted(series.items()):
        buckets = cumulative_buckets(durations.buckets, durations.count)
        family.add_metric([model, stage], buckets, durations.total)
    return family


def cumulative_buckets(
    recorded: Mapping[float, int], count: int, bounds: Sequence[float] = activity.BUCKETS
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


def worker_families(
    queues: Sequence[str], workers: Mapping[str, tuple[int, int]], slots: Mapping[str, int]
) -> list[Metric]:
    """Live and busy workers of every model queue (0 for a queue without any), and the slots
    of a worker of each queue that has live ones."""
    live = GaugeMetricFamily(WORKERS, HELP[WORKERS], labels=["model"])
    busy = GaugeMetricFamily(BUSY_WORKERS, HELP[BUSY_WORKERS], labels=["model"])
    per_worker = GaugeMetricFamily(WORKER_SLOTS, HELP[WORKER_SLOTS], labels=["model"])
    for queue in queues:
        counts = workers.get(queue, (0, 0))
        live.add_metric([queue], counts[0])
        busy.add_metric([queue], counts[1])
        if queue in slots:
            per_worker.add_metric([queue], slots[queue])
    return [live, busy, per_worker]


def priority_family(counts: Mapping[str, Mapping[int, int]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        ANALYSES_BY_PRIORITY, HELP[ANALYSES_BY_PRIORITY], labels=["model", "priority"]
    )
    for queue in sorted(counts):
        for priority, count in sorted(counts[queue].items()):
            family.add_metric([queue, str(priority)], count)
    return family
