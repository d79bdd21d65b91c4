"""Live scaling on the running stack (`oasis-autoscaler up`), seen as KEDA sees it.

A KEDA-shaped gRPC client (GetMetricSpec, GetMetrics, IsActive, and a StreamIsActive held open)
asks the stack's scaler while analyses run through the real client; the stack's KEDA stand-in
starts and stops real worker processes. Every scenario runs with each strategy.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from cli.keda.client import Answer, KedaClient
from tests.support.numba import numba_cache_root
from tests.support.up import LASTING_WORK, LiveStack, new_analysis, running_up, status
from tests.support.up import new_model as support_new_model

pytestmark = pytest.mark.e2e
CHUNKING = {
    "lookup_strategy": "FIXED_CHUNKS",
    "fixed_lookup_chunks": 4,
    "loss_strategy": "FIXED_CHUNKS",
    "fixed_analysis_chunks": 4,
}


@dataclass(frozen=True)
class Scenario:
    scaling: dict[str, Any]
    # With two analyses: the desired count must reach `reaches` and never pass `cap`.
    reaches: int
    cap: int


SCENARIOS = {
    "FIXED_WORKERS": Scenario({"scaling_strategy": "FIXED_WORKERS", "worker_count_fixed": 2}, 2, 2),
    "QUEUE_LOAD": Scenario({"scaling_strategy": "QUEUE_LOAD", "worker_count_max": 3}, 2, 3),
    "DYNAMIC_TASKS": Scenario(
        {"scaling_strategy": "DYNAMIC_TASKS", "chunks_per_worker": 2, "worker_count_max": 3}, 2, 3
    ),
}


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[LiveStack]:
    root = tmp_path_factory.mktemp("live")
    numba = numba_cache_root()
    with running_up(root, numba, {"OASIS_AUTOSCALER_SCALE_DOWN_STABILIZATION_SECONDS": "2"}) as up:
        yield up


def new_model(stack: LiveStack, scaling: dict[str, Any]) -> tuple[int, str]:
    return support_new_model(stack, scaling, CHUNKING)


@dataclass
class Pushes:
    """A StreamIsActive held open as KEDA holds it; the moments of its `true` messages."""

    keda: KedaClient
    model: str
    times: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.opened = threading.Event()
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self) -> None:
        stream = self.keda.stream(self.model)
        self.opened.set()
        try:
            for active in stream:
                if active:
                    self.times.append(time.monotonic())
        except grpc.RpcError:
            pass


def answer_within(deadline: float, check: Any) -> None:
    stop = time.monotonic() + deadline
    while not check():
        assert time.monotonic() < stop, f"not within {deadline} s"
        time.sleep(0.05)  # polling with a deadline


@pytest.mark.parametrize("strategy", sorted(SCENARIOS))
def test_work_wakes_the_model_at_once_and_workers_rise_and_drain(
    live: LiveStack, strategy: str
) -> None:
    scenario = SCENARIOS[strategy]
    model, queue = new_model(live, scenario.scaling)
    analyses = [new_analysis(live, model) for _ in range(2)]
    # Idle: no workers wanted, inactive, none running.
    idle = live.keda.ask(queue)
    assert (idle.metric, idle.active) == (0, False)
    pushes = Pushes(live.keda, queue)
    assert pushes.opened.wait(5)
    client = live.client()
    first, *others = analyses
    client.analyses.generate_and_run(first)
    # The work is in the API once its call returns (as the floor's below): the second from there.
    queued_at = time.monotonic()
    for analysis in others:
        client.analyses.generate_and_run(analysis)
    answer_within(5, lambda: bool(pushes.times))
    assert pushes.times[0] - queued_at <= 1.0, "the push came later than a second"

    most_desired, most_workers = 0.0, 0
    stop = time.monotonic() + 600
    while not all(_status(live, a) == "RUN_COMPLETED" for a in analyses):
        assert time.monotonic() < stop, "the analyses did not complete"
        statuses = {_status(live, a) for a in analyses}
        assert not statuses & {"RUN_ERROR", "INPUTS_GENERATION_ERROR"}, statuses
        most_desired = max(most_desired, live.keda.ask(queue).metric)
        most_workers = max(most_workers, live.workers(queue))
        time.sleep(0.2)  # sampling while the run goes on
    assert scenario.reaches <= most_desired <= scenario.cap
    assert 1 <= most_workers <= scenario.cap
    # Done: nothing wanted, inactive, and the stand-in stops every worker after the cooldown.
    answer_within(3, lambda: live.keda.ask(queue) == Answer(active=False, metric=0.0))
    answer_within(60, lambda: live.workers(queue) == 0)


def _status(stack: LiveStack, analysis: int) -> str:
    return status(stack, analysis)


@pytest.mark.parametrize("strategy", sorted(SCENARIOS))
def test_a_floor_set_over_rest_shows_within_a_second_with_no_work(
    live: LiveStack, strategy: str
) -> None:
    scaling = SCENARIOS[strategy].scaling
    model, queue = new_model(live, scaling)
    assert live.keda.ask(queue).metric == 0
    client = live.client()
    client.models.scaling_configuration.post(model, {**scaling, "worker_count_min": 2})
    changed_at = time.monotonic()
    answer_within(5, lambda: live.keda.ask(queue).metric == 2)
    assert time.monotonic() - changed_at <= 1.0
    assert live.keda.ask(queue).active
    # The stand-in keeps two workers warm, then lets them go when the floor is lifted.
    answer_within(60, lambda: live.workers(queue) == 2)
    client.models.scaling_configuration.post(model, {**scaling, "worker_count_min": 0})
    answer_within(60, lambda: live.workers(queue) == 0)


@pytest.mark.parametrize(
    ("metadata", "code"),
    [
        ({}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"model": "  "}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"model": "Nobody-Nothing-0"}, grpc.StatusCode.NOT_FOUND),
    ],
)
def test_a_missing_or_unknown_model_is_refused(
    live: LiveStack, metadata: dict[str, str], code: grpc.StatusCode
) -> None:
    from protos import externalscaler_pb2 as pb

    ref = pb.ScaledObjectRef(name="workers", namespace="default", scalerMetadata=metadata)
    calls = [
        lambda: live.keda.stub.IsActive(ref, timeout=3),
        lambda: live.keda.stub.GetMetricSpec(ref, timeout=3),
        lambda: live.keda.stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref), timeout=3),
        lambda: next(iter(live.keda.stub.StreamIsActive(ref, timeout=3))),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as raised:
            call()
        assert raised.value.code() is code
        assert "model" in raised.value.details()


HOLD_CHUNKING = {
    "lookup_strategy": "FIXED_CHUNKS",
    "fixed_lookup_chunks": 3,
    "loss_strategy": "FIXED_CHUNKS",
    "fixed_analysis_chunks": 7,
}
HOLD_CAP = 3


# Real kernel runs on the loaded machine, long enough that the workers started for its chunks are
# up while chunks still wait (the demo's analysis can end before they are).
@pytest.mark.timeout(900)
def test_dynamic_tasks_stops_no_worker_while_its_chunks_wait(live: LiveStack) -> None:
    """While a chunk of the model waits on its queue, its workers are never fewer than a moment
    before; after the last chunk they fall to the floor."""
    scaling = {
        "scaling_strategy": "DYNAMIC_TASKS",
        "chunks_per_worker": 2,
        "worker_count_max": HOLD_CAP,
        "worker_count_min": 1,
    }
    model, queue = support_new_model(live, scaling, HOLD_CHUNKING)
    analysis = new_analysis(live, model, work=LASTING_WORK)
    # One client for the whole run: each new one logs in, which would slow the sampling.
    analyses = live.client().analyses
    analyses.generate_and_run(analysis)
    names = ("oasis_model_queued_or_running_sub_tasks", "oasis_model_busy_workers")
    previous: tuple[float, int] | None = None  # (chunks waiting, live workers)
    dropped_while_waiting = []
    most_workers = 0
    stop = time.monotonic() + 600
    while (state := str(analyses.get(analysis).json()["status"])) != "RUN_COMPLETED":
        assert time.monotonic() < stop, "the analysis did not complete"
        assert "ERROR" not in state
        gauges = live.gauges(*names, "oasis_model_workers")
        workers = int(gauges.get(("oasis_model_workers", queue), 0))
        # One sub-task per worker (--concurrency 1): what is queued or running and not on a
        # busy worker is waiting on the queue.
        waiting = gauges.get((names[0], queue), 0) - gauges.get((names[1], queue), 0)
        if previous is not None and previous[0] > 0 and waiting > 0 and workers < previous[1]:
            dropped_while_waiting.append((previous, (waiting, workers)))
        previous = (waiting, workers)
        most_workers = max(most_workers, workers)
        time.sleep(0.2)  # sampling while the run goes on
    assert not dropped_while_waiting, dropped_while_waiting
    assert most_workers == HOLD_CAP
    # After the last chunk: the floor, asked for and kept.
    answer_within(3, lambda: live.keda.ask(queue) == Answer(active=True, metric=1.0))
    answer_within(60, lambda: live.workers(queue) == 1)
