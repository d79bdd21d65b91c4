"""The KEDA + HPA model: activation, the HPA's arithmetic, stabilization, rate and cooldown."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cli.keda.timing import KedaTiming, ScaledObjectModel

FAST = KedaTiming(
    polling_interval=5,
    hpa_sync_period=1,
    cooldown_period=10,
    scale_down_stabilization=3,
    max_replicas=20,
)


def run(model: ScaledObjectModel, until: float, metric: float) -> list[tuple[float, int]]:
    """Step the model at every due moment up to `until` with a constant answer."""
    seen = []
    while model.next_due <= until:
        now = model.next_due
        seen.append((now, model.step(now, active=metric > 0, metric=metric)))
    return seen


def test_a_model_never_active_stays_at_zero() -> None:
    model = ScaledObjectModel(FAST)
    assert {replicas for _, replicas in run(model, 60, 0)} == {0}


def test_a_push_wakes_a_model_at_once_and_the_poll_waits() -> None:
    model = ScaledObjectModel(FAST)
    model.step(0, active=False, metric=0)
    assert model.push(0.2) == 1
    # Without the push the next poll (5 s later) would have been the first to see the work.
    assert model.next_poll == 5


@pytest.mark.parametrize(
    ("minimum", "woken"),
    [(0, 1), (1, 1), (3, 3)],
)
def test_activation_scales_to_min_replicas_or_one(minimum: int, woken: int) -> None:
    model = ScaledObjectModel(KedaTiming(min_replicas=minimum, max_replicas=10), replicas=0)
    model.replicas = 0  # a target someone scaled to zero by hand
    assert model.push(0) == woken


@pytest.mark.parametrize(
    ("tolerance", "replicas", "metric", "expected"),
    [
        (0.0, 1, 3, 3),
        (0.0, 10, 11, 11),  # our ScaledObject: exact
        (0.1, 10, 11, 10),  # Kubernetes' default: a change of 1 in 10 is within tolerance
        (0.1, 10, 12, 12),
        (0.1, 10, 9, 10),
        (0.0, 10, 9, 9),
        (0.0, 2, 2.0004, 2),  # KEDA hands milli-units: 2.0004 is 2.000
        (0.0, 2, 2.5, 3),
    ],
)
def test_the_hpa_lands_on_ceil_metric_unless_within_tolerance(
    tolerance: float, replicas: int, metric: float, expected: int
) -> None:
    timing = KedaTiming(tolerance=tolerance, scale_down_stabilization=0, max_replicas=50)
    model = ScaledObjectModel(timing, replicas=replicas, last_active=0, next_poll=100)
    assert model.step(0, active=True, metric=metric) == expected


def test_the_hpa_defaults_limit_scale_up_to_four_pods_or_double_per_period() -> None:
    model = ScaledObjectModel(replace(FAST, hpa_default_scale_up=True))
    model.push(0)
    steps = dict(run(model, 3, 20))
    assert [steps[t] for t in (0, 1, 2, 3)] == [5, 10, 20, 20]


def test_our_scale_up_policy_reaches_the_count_in_one_sync() -> None:
    # The generator's policy: max_replicas pods per period, so nothing waits for a second sync.
    model = ScaledObjectModel(FAST)
    model.push(0)
    steps = dict(run(model, 1, 20))
    assert [steps[t] for t in (0, 1)] == [20, 20]


def test_scale_down_waits_out_the_stabilization_window() -> None:
    model = ScaledObjectModel(FAST)
    model.push(0)
    run(model, 5, 6)
    assert model.replicas == 6
    steps = dict(run(model, 12, 2))
    # The highest recommendation of the last 3 s (6, at t=5) holds until t=8.
    assert [steps[t] for t in (6, 7, 8, 9)] == [6, 6, 2, 2]


def test_an_idle_model_goes_to_zero_after_the_cooldown() -> None:
    model = ScaledObjectModel(FAST)
    model.push(0)
    run(model, 4, 1)
    assert model.last_active == 0
    steps = run(model, 30, 0)
    # The HPA keeps one (its floor is 1); KEDA's poll after the 10 s cooldown takes it to zero.
    assert [t for t, n in steps if n == 0][0] == 10
    assert all(n == 1 for t, n in steps if t < 10)


def test_min_replicas_keeps_a_model_warm() -> None:
    model = ScaledObjectModel(KedaTiming(min_replicas=2, hpa_sync_period=1, max_replicas=5))
    assert {n for _, n in run(model, 400, 0)} == {2}


@pytest.mark.parametrize(
    "bad",
    [
        {"polling_interval": 0},
        {"hpa_sync_period": -1},
        {"cooldown_period": -1},
        {"min_replicas": 3, "max_replicas": 2},
        {"max_replicas": 0},
        {"tolerance": -0.1},
    ],
)
def test_impossible_timings_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        KedaTiming(**bad)  # type: ignore[arg-type]


answers = st.lists(
    st.tuples(st.floats(0.1, 20), st.integers(0, 30), st.booleans()), min_size=1, max_size=40
)


@given(answers, st.integers(0, 3), st.integers(3, 12))
def test_replicas_stay_within_the_bounds(
    script: list[tuple[float, int, bool]], minimum: int, maximum: int
) -> None:
    timing = KedaTiming(
        polling_interval=2,
        hpa_sync_period=1,
        cooldown_period=4,
        min_replicas=minimum,
        max_replicas=maximum,
    )
    model = ScaledObjectModel(timing)
    now = 0.0
    for gap, metric, pushed in script:
        now += gap
        replicas = (
            model.push(now)
            if pushed and metric
            else model.step(now, active=metric > 0, metric=metric)
        )
        assert minimum <= replicas <= maximum


@given(st.integers(1, 40), st.integers(1, 25))
def test_a_steady_answer_is_reached_and_held(metric: int, maximum: int) -> None:
    model = ScaledObjectModel(KedaTiming(hpa_sync_period=1, max_replicas=maximum))
    model.push(0)
    run(model, 60, metric)
    assert model.replicas == min(metric, maximum)
