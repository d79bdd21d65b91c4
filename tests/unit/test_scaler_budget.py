"""The fleet budget in the scaler: priorities read from the samples, grants applied to all models
at each read, the servicer's answer, the scaler's own budget metrics, and the settings."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from protos import externalscaler_pb2 as pb
from scaler.budget import Preemption
from scaler.configuration import ScalingConfiguration, ScalingStrategy
from scaler.freshness import SourceHealth
from scaler.instruments import ScalerMetrics
from scaler.metric_names import ANALYSES_BY_PRIORITY as BY_PRIORITY
from scaler.metric_names import SCALER_INPUTS as INPUT_METRICS
from scaler.refresh import Refresher
from scaler.samples import Sample, build_states
from scaler.servicer import ExternalScalerServicer
from scaler.settings import ScalerSettings
from scaler.sources import PROMQL
from scaler.state import InMemoryStateView, ModelState, with_grants

DYNAMIC = ScalingConfiguration(scaling_strategy=ScalingStrategy.DYNAMIC_TASKS, chunks_per_worker=5)


def info(model: str) -> Sample:
    return Sample("oasis_model_scaling_info", {"model": model, "strategy": "DYNAMIC_TASKS"}, 1)


def by_priority(model: str, priority: str, count: float) -> Sample:
    return Sample(BY_PRIORITY, {"model": model, "priority": priority}, count)


def test_a_models_priority_is_its_highest_with_analyses() -> None:
    built = build_states(
        [
            info("a"),
            by_priority("a", "3", 2),
            by_priority("a", "7", 1),
            by_priority("a", "9", 0),  # no analysis left at 9
            info("b"),
            info("c"),
            by_priority("c", "5", float("nan")),
            # Replicas of the API: the same series twice.
            by_priority("a", "7", 1),
        ]
    )
    assert built.states["a"].priority == 7
    assert built.states["b"].priority is None
    assert built.states["c"].priority is None
    assert built.problems == []


@pytest.mark.parametrize("label", ["0", "11", "high", "", "4.5"])
def test_a_priority_label_that_is_not_a_level_is_skipped_with_a_problem(label: str) -> None:
    built = build_states([info("a"), by_priority("a", label, 1), by_priority("a", "2", 1)])
    assert built.states["a"].priority == 2
    assert [p.model for p in built.problems] == ["a"]
    assert BY_PRIORITY in built.problems[0].message and repr(label) in built.problems[0].message


def test_the_sources_ask_for_the_priorities_with_their_label() -> None:
    assert BY_PRIORITY in INPUT_METRICS
    assert f'or max by (__name__, model, priority) ({{__name__="{BY_PRIORITY}"}})' in PROMQL


FAIR = Preemption.FAIR_SHARE


def states() -> dict[str, ModelState]:
    # 3 analyses x 15 chunks at 5 per worker: 9 each.
    return {
        "low": ModelState(DYNAMIC, analyses=3, pending=45, priority=2),
        "high": ModelState(DYNAMIC, analyses=3, pending=45, priority=8),
        "idle": ModelState(DYNAMIC),
    }


def test_without_a_limit_every_model_is_granted_its_desired_count() -> None:
    granted, allocation = with_grants(states(), None)
    assert {m: s.grant for m, s in granted.items()} == {"low": None, "high": None, "idle": None}
    assert {m: s.granted for m, s in granted.items()} == {"low": 9, "high": 9, "idle": 0}
    assert allocation.total == 18


def test_with_a_limit_the_grants_share_it_and_desired_stays_visible() -> None:
    granted, allocation = with_grants(states(), 10)
    assert {m: s.granted for m, s in granted.items()} == {"low": 1, "high": 9, "idle": 0}
    assert {m: s.desired for m, s in granted.items()} == {"low": 9, "high": 9, "idle": 0}
    assert allocation.total == 10


def test_present_workers_and_the_last_grants_hold_the_budget() -> None:
    """With fair-share preemption: `low` was granted 9 alone and its 9 workers are present:
    `high`, arriving at a higher priority, gets only what they leave free, whatever it was
    promised before, and `low` keeps its workers down to its fair share (5 of 10: priorities
    left out, both want 9)."""
    alone = {
        "low": ModelState(DYNAMIC, analyses=3, pending=45, priority=4, workers=9),
        "high": ModelState(DYNAMIC, analyses=3, pending=45, priority=8),
    }
    granted, _ = with_grants(alone, 10, previous={"low": 9}, preemption=FAIR)
    assert {m: s.granted for m, s in granted.items()} == {"low": 5, "high": 1}
    # A budget of 9: low keeps 4 (4.5 rounded down); high gets its first as low's go.
    granted, _ = with_grants(alone, 9, previous={"low": 9}, preemption=FAIR)
    assert {m: s.granted for m, s in granted.items()} == {"low": 4, "high": 0}
    # Six of low's workers have left; the grant high was given is held for it too.
    drained = {**alone, "low": ModelState(DYNAMIC, analyses=3, pending=45, priority=4, workers=3)}
    granted, _ = with_grants(drained, 10, previous={"low": 1, "high": 1}, preemption=FAIR)
    assert {m: s.granted for m, s in granted.items()} == {"low": 1, "high": 7}
    # A grant KEDA has not acted on yet (no worker of high present) keeps its place: low, whose
    # 9 workers were told to go, gets no new one while they drain.
    granted, _ = with_grants(alone, 10, previous={"low": 0, "high": 9}, preemption=FAIR)
    assert {m: s.granted for m, s in granted.items()} == {"low": 0, "high": 9}


def test_grants_only_promised_are_kept_up_to_the_share() -> None:
    """With fair-share preemption: no worker of either model is up yet, the grants last given
    are promises, and a model whose priority rose takes the share from one whose workers have
    not started."""
    promised = {
        "a": ModelState(DYNAMIC, analyses=4, pending=4, priority=8),
        "b": ModelState(DYNAMIC, analyses=7, pending=7, priority=9),
    }
    one_each = ScalingConfiguration(scaling_strategy="DYNAMIC_TASKS", chunks_per_worker=1)
    promised = {m: replace(s, configuration=one_each) for m, s in promised.items()}
    granted, _ = with_grants(promised, 6, previous={"a": 4, "b": 2}, preemption=FAIR)
    assert {m: s.granted for m, s in granted.items()} == {"a": 1, "b": 2}
    # The next share (the refresher shares again until the grants settle): a's promise is gone.
    granted, _ = with_grants(promised, 6, previous={"a": 1, "b": 2}, preemption=FAIR)
    assert {m: s.granted for m, s in granted.items()} == {"a": 1, "b": 5}
    # The same grants with a's 4 workers up: a keeps its fair share of them (3 of 6).
    working = {**promised, "a": replace(promised["a"], workers=4)}
    granted, _ = with_grants(working, 6, previous={"a": 4, "b": 2}, preemption=FAIR)
    assert {m: s.granted for m, s in granted.items()} == {"a": 3, "b": 2}


def test_without_preemption_workers_granted_stay_while_wanted() -> None:
    """The default: `low`'s 9 workers (up or promised) stay with it while it wants them, and
    `high`, at a higher priority, gets what they leave free, then each one as `low` lets it go."""
    alone = {
        "low": ModelState(DYNAMIC, analyses=3, pending=45, priority=4, workers=9),
        "high": ModelState(DYNAMIC, analyses=3, pending=45, priority=8),
    }
    granted, _ = with_grants(alone, 10, previous={"low": 9})
    assert {m: s.granted for m, s in granted.items()} == {"low": 9, "high": 1}
    promised = {**alone, "low": replace(alone["low"], workers=0)}
    granted, _ = with_grants(promised, 10, previous={"low": 9})
    assert {m: s.granted for m, s in granted.items()} == {"low": 9, "high": 1}
    # low's queue has run down to 4 sub-tasks: the workers it no longer wants go to high.
    shrunk = {**alone, "low": replace(alone["low"], pending=4, sub_tasks=45, queued_or_running=4)}
    granted, _ = with_grants(shrunk, 10, previous={"low": 4, "high": 1})
    assert {m: s.granted for m, s in granted.items()} == {"low": 4, "high": 1}
    left = {**shrunk, "low": replace(shrunk["low"], workers=4)}
    granted, _ = with_grants(left, 10, previous={"low": 4, "high": 1})
    assert {m: s.granted for m, s in granted.items()} == {"low": 4, "high": 6}


def test_weights_act_within_a_priority() -> None:
    same = {m: ModelState(DYNAMIC, analyses=3, pending=45, priority=4) for m in ("a", "b")}
    granted, _ = with_grants(same, 8, {"a": 3.0})
    assert {m: s.granted for m, s in granted.items()} == {"a": 6, "b": 2}


class Source:
    def __init__(self, states: Mapping[str, ModelState]) -> None:
        self.states = states

    def __call__(self) -> Mapping[str, ModelState]:
        return self.states


class Context:
    """Enough of grpc.ServicerContext for unary calls that succeed."""

    def abort(self, code: Any, details: str) -> None:
        raise AssertionError(details)


def answer(view: InMemoryStateView, model: str) -> tuple[bool, float]:
    servicer = ExternalScalerServicer(view)
    ref = pb.ScaledObjectRef(name="w", namespace="n", scalerMetadata={"model": model})
    active = servicer.IsActive(ref, Context()).result  # type: ignore[arg-type]
    metrics = servicer.GetMetrics(
        pb.GetMetricsRequest(scaledObjectRef=ref, metricName="m"),
        Context(),  # type: ignore[arg-type]
    )
    return active, metrics.metricValues[0].metricValueFloat


def test_the_refresher_applies_the_budget_and_the_servicer_answers_the_grant(
    caplog: pytest.LogCaptureFixture,
) -> None:
    view = InMemoryStateView()
    health = SourceHealth(30)
    registry = CollectorRegistry()
    metrics = ScalerMetrics(registry, view, health)
    source = Source(states())
    refresher = Refresher(source, view, health, interval=1, metrics=metrics, worker_limit=10)

    assert refresher.refresh_once()
    assert answer(view, "high") == (True, 9.0)
    assert answer(view, "low") == (True, 1.0)
    assert answer(view, "idle") == (False, 0.0)
    sample = registry.get_sample_value
    assert sample("oasis_scaler_desired_workers", {"model": "low"}) == 9
    assert sample("oasis_scaler_granted_workers", {"model": "low"}) == 1
    assert sample("oasis_scaler_worker_budget") == 10
    assert sample("oasis_scaler_worker_floors_over_budget") == 0
    assert sample("oasis_scaler_starved_models") == 0

    # Floors over the budget: they hold, the gauge says by how much, a warning says so once.
    warm = ScalingConfiguration(worker_count_fixed=6, worker_count_min=6)
    source.states = {**states(), "warm": ModelState(warm), "warm2": ModelState(warm)}
    with caplog.at_level(logging.WARNING, logger="scaler.refresh"):
        refresher.refresh_once()
        refresher.refresh_once()
    assert answer(view, "warm") == (True, 6.0)
    assert answer(view, "high") == (False, 0.0)
    assert sample("oasis_scaler_worker_floors") == 12
    assert sample("oasis_scaler_worker_floors_over_budget") == 2
    assert sample("oasis_scaler_starved_models") == 2
    floors_warnings = [r for r in caplog.records if "over total_worker_limit" in r.message]
    assert len(floors_warnings) == 1


def test_without_a_budget_no_budget_gauges_are_published() -> None:
    view = InMemoryStateView()
    health = SourceHealth(30)
    registry = CollectorRegistry()
    metrics = ScalerMetrics(registry, view, health)
    Refresher(Source(states()), view, health, interval=1, metrics=metrics).refresh_once()
    assert registry.get_sample_value("oasis_scaler_granted_workers", {"model": "low"}) == 9
    assert registry.get_sample_value("oasis_scaler_worker_budget") is None
    assert answer(view, "low") == (True, 9.0)


def test_budget_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OASIS_AUTOSCALER_SCALER_TOTAL_WORKER_LIMIT", "12")
    monkeypatch.setenv("OASIS_AUTOSCALER_SCALER_MODEL_WEIGHTS", '{"OasisLMF-PiWind-1": 2.5}')
    settings = ScalerSettings()
    assert settings.total_worker_limit == 12
    assert settings.model_weights == {"OasisLMF-PiWind-1": 2.5}
    assert ScalerSettings(total_worker_limit=None).total_worker_limit is None
    assert ScalerSettings().budget_preemption is Preemption.NONE
    monkeypatch.setenv("OASIS_AUTOSCALER_SCALER_BUDGET_PREEMPTION", "fair-share")
    assert ScalerSettings().budget_preemption is Preemption.FAIR_SHARE


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"total_worker_limit": -1}, "total_worker_limit"),
        ({"model_weights": {"a": 0}}, "model_weights.a"),
        ({"model_weights": {"a": float("inf")}}, "model_weights.a"),
        ({"model_weights": {"a": "heavy"}}, "model_weights.a"),
        ({"budget_preemption": "always"}, "budget_preemption"),
    ],
)
def test_bad_budget_settings_are_refused_naming_the_field(
    fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError, match=field.replace(".", r"\.")):
        ScalerSettings(**fields)
