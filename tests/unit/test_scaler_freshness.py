"""Staleness: when the scaler answers from its last good state, and when it refuses."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from scaler.freshness import SourceHealth, SourceRecord, age, stale_reason
from scaler.instruments import ScalerMetrics
from scaler.refresh import Refresher
from scaler.samples import Problem
from scaler.state import InMemoryStateView, ModelState

MODEL = "OasisLMF-PiWind-1"
SINCE = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

# (id, record, now, fresh?, text in the reason)
CASES: list[tuple[str, SourceRecord, float, bool, str]] = [
    ("just read", SourceRecord(started=0, last_good=100), 100, True, ""),
    ("read within the age", SourceRecord(started=0, last_good=100), 129.9, True, ""),
    ("exactly the age", SourceRecord(started=0, last_good=100), 130, True, ""),
    (
        "failing but young",
        SourceRecord(started=0, last_good=100, failing_since=SINCE, last_error="refused"),
        120,
        True,
        "",
    ),
    (
        "failing and too old",
        SourceRecord(started=0, last_good=100, failing_since=SINCE, last_error="refused"),
        130.5,
        False,
        "failed since 2026-01-02T03:04:05Z; the last good state is 30.5 s old, more than the "
        "30 s allowed: refused",
    ),
    (
        "not read yet",
        SourceRecord(started=10),
        10.1,
        False,
        "has not read the metrics source yet",
    ),
    (
        "never read well",
        SourceRecord(started=10, failing_since=SINCE, last_error="refused"),
        12,
        False,
        "failed since 2026-01-02T03:04:05Z and the scaler has had no good state since it "
        "started 2.0 s ago: refused",
    ),
]


@pytest.mark.parametrize(
    ("record", "now", "fresh", "reason"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_stale_reason(record: SourceRecord, now: float, fresh: bool, reason: str) -> None:
    got = stale_reason(record, now, max_age=30)
    assert (got is None) is fresh
    if not fresh:
        assert got is not None and reason in got


def test_age_counts_from_start_until_the_first_good_read() -> None:
    assert age(SourceRecord(started=5), 7) == 2
    assert age(SourceRecord(started=5, last_good=6), 7) == 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.wall = SINCE

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.wall += timedelta(seconds=seconds)


class FlakySource:
    """A source a test switches between answering and failing."""

    def __init__(self, states: Mapping[str, ModelState]) -> None:
        self.states = states
        self.error: Exception | None = None

    def __call__(self) -> Mapping[str, ModelState]:
        if self.error:
            raise self.error
        return self.states


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def health(clock: Clock) -> SourceHealth:
    return SourceHealth(30, clock=lambda: clock.now, wall_clock=lambda: clock.wall)


def test_a_failing_source_keeps_the_last_good_state_until_max_age(
    clock: Clock, health: SourceHealth
) -> None:
    view = InMemoryStateView()
    source = FlakySource({MODEL: ModelState(analyses=1)})
    serving: list[bool] = []
    registry = CollectorRegistry()
    metrics = ScalerMetrics(registry, view, health)
    refresher = Refresher(
        source, view, health, interval=0.5, metrics=metrics, on_serving=serving.append
    )

    assert refresher.refresh_once() is True
    assert view.get(MODEL) == ModelState(analyses=1) and serving == [True]

    source.error = ConnectionError("connection refused")
    clock.advance(1)
    assert refresher.refresh_once() is False
    assert view.get(MODEL) == ModelState(analyses=1), "a failure never clears the state"
    assert health.stale_reason() is None
    clock.advance(29)
    refresher.refresh_once()
    assert serving == [True], "still within the max age"
    clock.advance(0.5)
    refresher.refresh_once()
    assert serving == [True, False]
    reason = health.stale_reason()
    assert reason is not None and "failed since 2026-01-02T03:04:06Z" in reason
    assert "connection refused" in reason
    assert view.get(MODEL) == ModelState(analyses=1)

    source.error = None
    source.states = {MODEL: ModelState(analyses=2)}
    refresher.refresh_once()
    assert serving == [True, False, True]
    assert view.get(MODEL) == ModelState(analyses=2)
    assert health.record.failing_since is None

    assert registry.get_sample_value("oasis_scaler_refreshes_total") == 5
    assert registry.get_sample_value("oasis_scaler_refresh_errors_total") == 3
    assert registry.get_sample_value("oasis_scaler_desired_workers", {"model": MODEL}) == 1
    assert registry.get_sample_value("oasis_scaler_serving") == 1
    assert registry.get_sample_value("oasis_scaler_source_age_seconds") == 0


def test_a_read_replaces_the_whole_state(health: SourceHealth) -> None:
    view = InMemoryStateView({"Gone-1-1": ModelState()})
    Refresher(FlakySource({MODEL: ModelState()}), view, health, interval=1).refresh_once()
    assert view.models() == [MODEL]


def test_not_serving_before_the_first_good_read(clock: Clock, health: SourceHealth) -> None:
    source = FlakySource({})
    source.error = TimeoutError()
    serving: list[bool] = []
    refresher = Refresher(
        source, InMemoryStateView(), health, interval=1, on_serving=serving.append
    )
    refresher.refresh_once()
    assert serving == [False]
    reason = health.stale_reason()
    assert reason is not None and "no good state since it started" in reason
    assert "TimeoutError" in reason


def test_problems_are_counted_every_read_and_logged_once(
    health: SourceHealth, caplog: pytest.LogCaptureFixture
) -> None:
    registry = CollectorRegistry()
    metrics = ScalerMetrics(registry, InMemoryStateView(), health)
    problem = Problem(MODEL, "invalid scaling configuration")
    for _ in range(3):
        metrics.report_problems([problem])
    assert registry.get_sample_value("oasis_scaler_invalid_values_total", {"model": MODEL}) == 3
    assert [r.getMessage() for r in caplog.records].count(
        f"model {MODEL}: invalid scaling configuration"
    ) == 1
