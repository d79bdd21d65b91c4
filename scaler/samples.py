"""From published metric samples to each model's state: the pure core of the scaler's input.

Both sources (a scrape of the publishers' /metrics, or PromQL over Prometheus) reduce to a list of
`Sample`s with the names of docs/metrics.md; `build_states` turns them into `ModelState`s.

Rules:
- A model is known when it has an `oasis_model_scaling_info` sample (the API publishes one for
  every registered model, idle ones included); other samples of unknown models are ignored.
- Several samples of one number for one model (several scrape targets, or extra labels) are
  merged by taking the largest, as PromQL's `max by (model)` does. The targets are replicas of
  the API over one database, so they publish the same numbers: summing would count every
  analysis once per replica, and the largest is the cautious choice while one lags.
- `oasis_model_recorded_sub_tasks`, `oasis_model_queued_or_running_sub_tasks` and
  `oasis_model_queued_sub_tasks` feed DYNAMIC_TASKS; a model without the first two (an older
  publisher) counts `pending` in their place, one without the last counts every sub-task queued
  or running as queued.
  `oasis_model_worker_slots` is 1 when not published (no live worker says), and
  `oasis_model_workers` (present workers) counts against the fleet budget.
- `oasis_model_unqueued_chunks` and `oasis_model_joining_chunks` count 0 when not published (an
  older publisher, the exporter), and `oasis_model_stage_gap_seconds` is unknown: the rule then
  answers as before them. A gap that is not a number of seconds, 0 or more, is unknown too.
- A model's priority is the highest `priority` label of its `oasis_model_analyses_by_priority`
  samples with a count above 0 (None when it has none); a label that is not an integer 1-10 is
  skipped with a `Problem`.
- A value that does not make a valid `ScalingConfiguration` (a strategy not spelled as the enum,
  a negative or fractional count, min above max, NaN) never fails the refresh: the model takes
  the default configuration and a `Problem` says why. A bad work count counts as 0.

Pure: no I/O, nothing from grpc or prometheus_client.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from pydantic import ValidationError

from scaler.budget import MAX_PRIORITY, MIN_PRIORITY
from scaler.configuration import ScalingConfiguration
from scaler.metric_names import (
    ANALYSES,
    ANALYSES_BY_PRIORITY,
    JOINING_CHUNKS,
    MODEL_LABEL,
    PENDING,
    PRIORITY_LABEL,
    QUEUED,
    QUEUED_OR_RUNNING,
    RECORDED,
    SCALING_GAUGES,
    SCALING_INFO,
    STAGE_GAP,
    STRATEGY_LABEL,
    UNQUEUED_CHUNKS,
    WORK_GAUGES,
    WORKER_GAUGES,
    WORKER_SLOTS,
    WORKERS,
)
from scaler.state import ModelState

# The one-number families of a model, taken by their largest sample (built once: every sample
# of every refresh is looked up here).
NUMBERS = frozenset({*SCALING_GAUGES, *WORK_GAUGES, *WORKER_GAUGES, STAGE_GAP})


class Sample(NamedTuple):
    name: str
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class Problem:
    """A published value the scaler could not use, and what it did instead."""

    model: str
    message: str


@dataclass(frozen=True)
class Built:
    states: dict[str, ModelState] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


@dataclass
class _Published:
    """What the samples say about one model, before validation."""

    strategies: list[str] = field(default_factory=list)
    numbers: dict[str, float] = field(default_factory=dict)
    # Priority levels with active analyses, and priority labels that are not levels.
    priorities: set[int] = field(default_factory=set)
    bad_priorities: set[str] = field(default_factory=set)

    def take_priority(self, label: str, value: float) -> None:
        level = _priority(label)
        if level is None:
            self.bad_priorities.add(label)
        elif value > 0:  # NaN is not above 0
            self.priorities.add(level)

    def take(self, name: str, value: float) -> None:
        # NaN loses to any number in max(), so it is kept only when nothing else was published.
        old = self.numbers.get(name)
        if old is None or math.isnan(old) or value > old:
            self.numbers[name] = value


def build_states(samples: Iterable[Sample], *, worker_start: float | None = None) -> Built:
    """Each known model's state from the samples, and the problems met on the way.

    `worker_start`: seconds a new worker takes to start, the scaler's setting, given to every
    model's state."""
    published: dict[str, _Published] = {}
    for sample in samples:
        model = sample.labels.get(MODEL_LABEL, "")
        if not model:
            continue
        entry = published.setdefault(model, _Published())
        if sample.name == SCALING_INFO:
            strategy = sample.labels.get(STRATEGY_LABEL, "")
            if strategy not in entry.strategies:
                entry.strategies.append(strategy)
        elif sample.name in NUMBERS:
            entry.take(sample.name, float(sample.value))
        elif sample.name == ANALYSES_BY_PRIORITY:
            entry.take_priority(sample.labels.get(PRIORITY_LABEL, ""), float(sample.value))
    built = Built()
    for model in sorted(published):
        entry = published[model]
        if not entry.strategies:
            continue  # no scaling_info: not a registered model
        configuration, problems = _configuration(model, entry)
        analyses, analyses_problem = _work(model, ANALYSES, entry.numbers.get(ANALYSES))
        pending, pending_problem = _work(model, PENDING, entry.numbers.get(PENDING))
        counts: dict[str, int | None] = {}
        for name in (RECORDED, QUEUED_OR_RUNNING, QUEUED, WORKERS):
            # Not published (an older API): None, and the rule counts `pending` in its place.
            value = entry.numbers.get(name)
            counts[name], problem = (None, None) if value is None else _work(model, name, value)
            if problem:
                built.problems.append(problem)
                if name == QUEUED:
                    # 0 queued would release busy workers: a bad count is taken as unpublished.
                    counts[name] = None
        chunks = {}
        for name in (UNQUEUED_CHUNKS, JOINING_CHUNKS):
            chunks[name], problem = _work(model, name, entry.numbers.get(name))
            if problem:
                built.problems.append(problem)
        stage_gap, gap_problem = _seconds(model, STAGE_GAP, entry.numbers.get(STAGE_GAP))
        if gap_problem:
            built.problems.append(gap_problem)
        slots, slots_problem = _work(model, WORKER_SLOTS, entry.numbers.get(WORKER_SLOTS, 1.0))
        if slots < 1:
            # No live worker publishes it, or a bad value: a worker runs one sub-task.
            slots = 1
        priority = max(entry.priorities, default=None)
        built.states[model] = ModelState(
            configuration,
            analyses=analyses,
            pending=pending,
            sub_tasks=counts[RECORDED],
            queued_or_running=counts[QUEUED_OR_RUNNING],
            queued=counts[QUEUED],
            slots_per_worker=slots,
            workers=counts[WORKERS] or 0,
            priority=priority,
            unqueued_chunks=chunks[UNQUEUED_CHUNKS],
            joining_chunks=chunks[JOINING_CHUNKS],
            stage_gap=stage_gap,
            worker_start=worker_start,
        )
        if slots_problem:
            built.problems.append(slots_problem)
        built.problems.extend(problems)
        built.problems.extend(
            Problem(model, f"{ANALYSES_BY_PRIORITY} has priority={label!r}, not 1-10; skipped")
            for label in sorted(entry.bad_priorities)
        )
        built.problems.extend(p for p in (analyses_problem, pending_problem) if p)
    return built


def _configuration(model: str, entry: _Published) -> tuple[ScalingConfiguration, list[Problem]]:
    problems = []
    strategy = entry.strategies[0]
    if len(entry.strategies) > 1:
        # Replicas disagree only for a moment around an update; the first target wins.
        problems.append(
            Problem(
                model,
                f"{SCALING_INFO} gives several strategies {entry.strategies}; using {strategy!r}",
            )
        )
    fields: dict[str, object] = {"scaling_strategy": strategy}
    for gauge, name in SCALING_GAUGES.items():
        if gauge in entry.numbers:
            fields[name] = entry.numbers[gauge]
    try:
        return ScalingConfiguration.model_validate(fields), problems
    except ValidationError as error:
        reasons = "; ".join(
            f"{'.'.join(str(part) for part in detail['loc']) or 'configuration'}="
            f"{detail['input']!r}: {detail['msg']}"
            for detail in error.errors()
        )
        problems.append(
            Problem(model, f"invalid scaling configuration ({reasons}); using the defaults")
        )
        return ScalingConfiguration(), problems


def _work(model: str, name: str, value: float | None) -> tuple[int, Problem | None]:
    if value is None:
        return 0, None
    if math.isfinite(value) and value >= 0 and value.is_integer():
        return int(value), None
    return 0, Problem(model, f"{name}={value!r} is not a count of work; counting 0")


def _seconds(model: str, name: str, value: float | None) -> tuple[float | None, Problem | None]:
    if value is None:
        return None, None
    if math.isfinite(value) and value >= 0:
        return value, None
    return None, Problem(model, f"{name}={value!r} is not a number of seconds; taken as unknown")


def _priority(label: str) -> int | None:
    try:
        level = int(label)
    except ValueError:
        return None
    return level if MIN_PRIORITY <= level <= MAX_PRIORITY else None
