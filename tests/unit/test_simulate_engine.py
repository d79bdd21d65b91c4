"""The simulator's core on small traces: hand-worked timings, then properties of any trace."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cli.simulate.engine import ModelRun, Result, Simulation
from cli.simulate.ours import KedaScaling, max_replicas
from cli.simulate.trace import Trace
from cli.simulate.upstream import UpstreamScaling, upstream_desired
from cli.simulate.workload import analyses_of
from scaler.configuration import ScalingConfiguration, ScalingStrategy

KEDA = {
    "polling_interval": 30,
    "hpa_sync_period": 15,
    "cooldown_period": 60,
    "scale_down_stabilization": 0,
    "push": True,
    "pod_startup": 5,
}
NO_SERIAL = {"split": 0, "join": 0}


def trace(models: dict[str, Any], analyses: list[dict[str, Any]], **more: Any) -> Trace:
    return Trace.model_validate(
        {"models": models, "analyses": analyses, "keda": {**KEDA, **more.pop("keda", {})}, **more}
    )


ONE_WORKER_TWO_CHUNKS = trace(
    {"M": {"scaling": {"worker_count_fixed": 1}, "durations": NO_SERIAL}},
    [{"model": "M", "loss_chunks": 2, "loss_chunk_seconds": 10}],
)


def test_ours_by_hand() -> None:
    # Pushed awake at 0, the pod runs from 5; chunks 5-15 and 15-25. Last active at the poll of
    # 0, so the poll of 60 (cooldown 60) scales to zero: the pod lived 60 s.
    result = Simulation(ONE_WORKER_TWO_CHUNKS, KedaScaling(ONE_WORKER_TWO_CHUNKS)).run()
    (model,) = result.models
    assert (model.makespan, model.wait_mean, model.wait_max) == (25, 10, 15)
    assert (model.worker_seconds, model.peak_workers, result.completed) == (60, 1, 1)
    assert list(model.timeline) == [(0, 2, 1), (15, 1, 1), (25, 0, 1), (60, 0, 0)]


def test_without_push_the_model_waits_for_the_next_poll() -> None:
    slow = ONE_WORKER_TWO_CHUNKS.model_copy(
        update={"keda": ONE_WORKER_TWO_CHUNKS.keda.model_copy(update={"push": False})}
    )
    shifted = slow.model_copy(
        update={"analyses": [slow.analyses[0].model_copy(update={"arrival": 1.0})]}
    )
    # Arrives at 1, the poll of 30 wakes it: the pod runs from 35, chunks 35-45 and 45-55.
    (model,) = Simulation(shifted, KedaScaling(shifted)).run().models
    assert (model.makespan, model.wait_mean, model.wait_max) == (54, 39, 44)


def test_a_model_s_own_scale_down_window_holds_only_its_pods() -> None:
    # Two pods each, chunks 5-15 and 5-105; the sub-tasks after the chunks keep both asked for
    # until 105. Then N's idle pod goes at the sync of 105, while M's own 30 s window holds the
    # answer of the sync of 90 (2) until the sync of 120: 15 s more of one pod, nothing sooner.
    spec = {
        "scaling": {
            "scaling_strategy": "DYNAMIC_TASKS",
            "chunks_per_worker": 1,
            "worker_count_max": 2,
        },
        "durations": NO_SERIAL,
    }
    work = {"loss_chunks": 2, "loss_chunk_seconds": [10, 100]}
    both = trace(
        {"M": {**spec, "scale_down_stabilization": 30}, "N": spec},
        [{"model": "M", **work}, {"model": "N", **work}],
    )
    held, plain = Simulation(both, KedaScaling(both)).run().models
    assert held.worker_seconds - plain.worker_seconds == 15
    assert held.makespan == plain.makespan == 105


def pods_started(timeline: Sequence[tuple[float, int, int]], start: float, end: float) -> int:
    """Pods added between `start` and `end`, from the timeline's pod counts."""
    added, before = 0, None
    for moment, _, pods in timeline:
        if start <= moment < end and before is not None:
            added += max(pods - before, 0)
        before = pods
    return added


def test_a_join_shorter_than_a_pod_start_keeps_its_workers_once_seen() -> None:
    # Two analyses 400 s apart: 4 lookup chunks, then 4 loss chunks, of 30 s each; a 4 s join
    # and a 2 s split between the stages, pods starting in 20 s. The first analysis lets two
    # workers go as its last lookup chunks run and starts two again for its loss chunks; it
    # shows the gap (6 s) shorter than a pod start, so the second keeps its 4 workers through
    # its join and runs its loss chunks at once.
    spec = {
        "scaling": {
            "scaling_strategy": "DYNAMIC_TASKS",
            "chunks_per_worker": 2,
            "worker_count_max": 5,
        },
        "durations": {"split": 2, "join": 4},
    }
    work = {
        "model": "M",
        "lookup_chunks": 4,
        "lookup_chunk_seconds": 30,
        "loss_chunks": 4,
        "loss_chunk_seconds": 30,
        "count": 2,
        "every": 400,
    }
    both = trace({"M": spec}, [work], keda={"pod_startup": 20})
    (model,) = Simulation(both, KedaScaling(both)).run().models
    first_lookup_ends, second_lookup_ends = 52, 452
    assert pods_started(model.timeline, first_lookup_ends - 30, 400) == 2
    assert pods_started(model.timeline, second_lookup_ends - 30, 800) == 0
    # The second ran 19 s sooner: its loss chunks waited for no pod.
    first, second = (
        [t for t, work_left, _ in model.timeline if work_left == 0 and lo < t < lo + 400]
        for lo in (0, 400)
    )
    assert (first[0], second[0] - 400) == (114, 95)


def test_upstream_by_hand() -> None:
    # The controller acts 1 s after the arrival: the pod runs from 6, chunks 6-16 and 16-26.
    # At 27 the model is idle; the one timer scales it to zero 20 s later, at 47.
    result = Simulation(ONE_WORKER_TWO_CHUNKS, UpstreamScaling(ONE_WORKER_TWO_CHUNKS)).run()
    (model,) = result.models
    assert (model.makespan, model.wait_mean, model.wait_max) == (26, 11, 16)
    assert (model.worker_seconds, model.peak_workers) == (46, 1)


def test_upstream_removes_busy_pods_and_their_work_is_done_again() -> None:
    # DYNAMIC_TASKS at 1 per worker with a cap of 2; a QUEUE_LOAD would not shrink mid-run.
    models = {
        "M": {
            "scaling": {"scaling_strategy": "DYNAMIC_TASKS", "chunks_per_worker": 1},
            "durations": NO_SERIAL,
        }
    }
    work = trace(
        models,
        [
            {"model": "M", "loss_chunks": 1, "loss_chunk_seconds": 100},
            {"model": "M", "arrival": 10, "loss_chunks": 1, "loss_chunk_seconds": 5},
        ],
        upstream={"termination_grace": 30},
    )
    result = Simulation(work, UpstreamScaling(work)).run()
    assert result.completed == 2
    (model,) = result.models
    # Upstream counts the finished analysis's sub-tasks until it ends: no shrink, nothing lost.
    assert model.lost_seconds == 0


def test_the_worked_case_asks_for_nine_workers() -> None:
    three = trace(
        {
            "M": {
                "scaling": {"scaling_strategy": "DYNAMIC_TASKS", "chunks_per_worker": 5},
                "chunking": {"loss_strategy": "DYNAMIC_CHUNKS", "dynamic_events_per_analysis": 100},
                "durations": NO_SERIAL,
            }
        },
        [{"model": "M", "events": 1447, "count": 3}],
    )
    policy = KedaScaling(three)
    simulation = Simulation(three, policy)
    model = simulation.models[0]
    # The stage's chunks come from the chunking core: 15 per analysis.
    assert [len(s.chunk_seconds) for s in analyses_of(three)[0].stages] == [15]
    simulation.run()
    assert model.total_analyses == 3
    model.analyses, model.pending = 3, 45
    policy.work_changed(model, 0.0, False)
    assert policy.desired(model) == 9


# Two models, `high` and `low`, each asking for a worker per sub-task.
ONE_PER_CHUNK = {
    name: {
        "scaling": {"scaling_strategy": "DYNAMIC_TASKS", "chunks_per_worker": 1},
        "durations": NO_SERIAL,
    }
    for name in ("high", "low")
}


def test_a_budget_shares_workers_by_priority() -> None:
    work = trace(
        ONE_PER_CHUNK,
        [
            {"model": "high", "loss_chunks": 6, "loss_chunk_seconds": 60, "priority": 9},
            {"model": "low", "loss_chunks": 6, "loss_chunk_seconds": 60, "priority": 2},
        ],
        budget={"total_worker_limit": 4},
    )
    policy = KedaScaling(work)
    simulation = Simulation(work, policy)
    simulation.run()
    high, low = simulation.models
    high.analyses = low.analyses = 1
    high.pending = low.pending = 11
    high.by_priority[9] = low.by_priority[2] = 1
    for model in (high, low):
        policy.work_changed(model, 0.0, False)
    # 11 sub-tasks each at 1 per worker: 11 wanted each; one each, then priority 9 first.
    assert (policy.granted(high), policy.granted(low)) == (3, 1)


@pytest.mark.parametrize("preemption", ["none", "fair-share"])
def test_the_budget_preemption_decides_who_waits(preemption: str) -> None:
    """`low` fills a budget of 4 with 8 chunks of 100 s; `high` (priority 9) arrives at 50 s.
    Without preemption `low` keeps its 4 workers while its queue lasts, so `high` starts only
    as `low`'s last round ends; with fair-share preemption 2 of them go over after their
    first chunk, and `low` takes longer."""
    work = trace(
        ONE_PER_CHUNK,
        [
            {"model": "low", "loss_chunks": 8, "loss_chunk_seconds": 100, "priority": 2},
            {
                "model": "high",
                "arrival": 50,
                "loss_chunks": 4,
                "loss_chunk_seconds": 10,
                "priority": 9,
            },
        ],
        budget={"total_worker_limit": 4, "preemption": preemption},
    )
    result = Simulation(work, KedaScaling(work)).run()
    high, low = result.models
    assert result.peak_workers <= 4
    if preemption == "none":
        # low's chunks run 5-105 and 105-205; high's first worker starts as one is let go.
        assert (low.makespan, high.wait_max > 150) == (205, True)
    else:
        assert (low.makespan > 205, high.wait_max < 100) == (True, True)


def test_upstream_rules() -> None:
    dynamic = ScalingConfiguration(
        scaling_strategy=ScalingStrategy.DYNAMIC_TASKS, chunks_per_worker=2, worker_count_max=10
    )
    assert upstream_desired(dynamic, analyses=1, tasks=8) == 4
    floor = ScalingConfiguration(worker_count_fixed=2, worker_count_min=4, worker_count_max=4)
    assert upstream_desired(floor, analyses=1, tasks=1) == 4
    queue = ScalingConfiguration(scaling_strategy=ScalingStrategy.QUEUE_LOAD, worker_count_max=5)
    assert upstream_desired(queue, analyses=30, tasks=1) == 5


def test_max_replicas_cover_the_strategy() -> None:
    spec = ONE_WORKER_TWO_CHUNKS.models["M"].model_copy(
        update={"scaling": ScalingConfiguration(worker_count_fixed=12, worker_count_max=3)}
    )
    assert max_replicas(spec) == 12


# --- properties ---------------------------------------------------------------------------


@st.composite
def traces(draw: st.DrawFn) -> Trace:
    names = draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3, unique=True))
    models = {}
    for name in names:
        strategy = draw(st.sampled_from(["FIXED_WORKERS", "QUEUE_LOAD", "DYNAMIC_TASKS"]))
        models[name] = {
            "scaling": {
                "scaling_strategy": strategy,
                "worker_count_fixed": draw(st.integers(0, 4)),
                "worker_count_max": draw(st.integers(1, 5)),
                "chunks_per_worker": draw(st.integers(1, 4)),
            },
            "durations": {
                "split": draw(st.sampled_from([0, 1])),
                "join": draw(st.sampled_from([0, 3])),
            },
        }
    analyses = [
        {
            "model": draw(st.sampled_from(names)),
            "arrival": draw(st.integers(0, 200)),
            "priority": draw(st.integers(1, 10)),
            "loss_chunks": draw(st.integers(1, 6)),
            "loss_chunk_seconds": draw(st.integers(1, 90)),
        }
        for _ in range(draw(st.integers(1, 5)))
    ]
    limit = draw(st.one_of(st.none(), st.integers(1, 6)))
    return trace(
        models,
        analyses,
        budget={"total_worker_limit": limit},
        keda={"scale_down_stabilization": draw(st.sampled_from([0, 30]))},
    )


class Watched(Simulation):
    """Checks each replica count the policy sets."""

    caps: list[int]

    def set_replicas(self, model: ModelRun, replicas: int) -> None:
        self.caps.append(replicas)
        assert replicas <= max_replicas(model.spec)
        super().set_replicas(model, replicas)


def expected_sub_tasks(work: Trace) -> int:
    return sum(
        stage.chunks + (1 if stage.split_seconds else 0) + (1 if stage.join_seconds else 0)
        for analysis in analyses_of(work)
        for stage in analysis.stages
    )


def fixed_zero(work: Trace) -> bool:
    """A model that can never get a worker: FIXED_WORKERS 0."""
    used = {a.model for a in work.analyses}
    return any(
        m.scaling.scaling_strategy == "FIXED_WORKERS" and m.scaling.worker_count_fixed == 0
        for name, m in work.models.items()
        if name in used
    )


@given(traces())
@settings(max_examples=60, deadline=None)
def test_ours_loses_no_chunk_and_keeps_to_the_budget(work: Trace) -> None:
    policy = KedaScaling(work)
    grants: list[int] = []
    original = policy.granted

    def granted(model: ModelRun) -> int:
        assert policy._sim is not None
        total = sum(original(m) for m in policy._sim.models)
        grants.append(total)
        return original(model)

    policy.granted = granted  # type: ignore[method-assign]
    simulation = Watched(work, policy)
    simulation.caps = []
    result = simulation.run()
    limit = work.budget.total_worker_limit
    if limit is not None:
        assert max(grants, default=0) <= limit
    if fixed_zero(work):
        return
    assert result.completed == sum(a.count for a in work.analyses)
    assert sum(m.sub_tasks for m in result.models) == expected_sub_tasks(work)
    assert all(m.lost_seconds == 0 for m in result.models)
    assert result.models and all(not m.timeline or m.timeline[-1][2] == 0 for m in result.models)


@given(traces())
@settings(max_examples=60, deadline=None)
def test_upstream_finishes_every_analysis(work: Trace) -> None:
    simulation = Watched(work, UpstreamScaling(work))
    simulation.caps = []
    result: Result = simulation.run()
    if fixed_zero(work) or work.budget.total_worker_limit is not None:
        # Its limit in iteration order can leave a model without workers until others finish.
        assert result.completed <= sum(a.count for a in work.analyses)
        return
    assert result.completed == sum(a.count for a in work.analyses)
    assert sum(m.sub_tasks for m in result.models) >= expected_sub_tasks(work)


@pytest.mark.parametrize(
    ("analysis", "message"),
    [
        ({"model": "M"}, "needs a stage"),
        ({"model": "M", "loss_chunks": 2}, "loss_chunk_seconds"),
        ({"model": "M", "events": 10, "loss_chunks": 2, "loss_chunk_seconds": 1}, "not both"),
        ({"model": "M", "loss_chunks": 2, "loss_chunk_seconds": [1]}, "1 values, not 2"),
        ({"model": "N", "events": 10}, "not one of the trace's models"),
        ({"model": "M", "events": 10, "chunking": {"fixed_analysis_chunks": 0}}, "greater"),
    ],
)
def test_bad_traces_are_refused(analysis: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        trace({"M": {}}, [analysis])
