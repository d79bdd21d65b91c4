"""Live scaling on the running stack (`oasis-autoscaler up`), seen as KEDA sees it.

A KEDA-shaped gRPC client (GetMetricSpec, GetMetrics, IsActive, and a StreamIsActive held open)
asks the stack's scaler while analyses run through the real client; the stack's KEDA stand-in
starts and stops real worker processes. Every scenario runs with each strategy.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
import requests
from oasislmf.platform_api.client import APIClient

from cli.keda.client import Answer, KedaClient
from cli.local.launch import grpc_serving, service_argv
from tests.support.servers import free_port, wait_until
from worker.demo_model import demo_analysis_settings, demo_locations, model_settings

pytestmark = pytest.mark.e2e
PASSWORD = "live-password"
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


@dataclass
class LiveStack:
    api_url: str
    keda: KedaClient
    process: subprocess.Popen[bytes]

    def client(self) -> APIClient:
        return APIClient(api_url=self.api_url, username="admin", password=PASSWORD)

    def workers(self, queue: str) -> int:
        """Live workers of `queue`, as the API's /v2/queue/ reports them."""
        client = self.client()
        queues = client.api.get(f"{self.api_url}/v2/queue/").json()
        return sum(q["worker_count"] for q in queues if q["name"] == queue)


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[LiveStack]:
    root = tmp_path_factory.mktemp("live")
    numba = pytestconfig.cache.mkdir("oasis-kernel-numba").absolute()  # type: ignore[union-attr]
    api_port, scaler_port = free_port(), free_port()
    env = {
        **os.environ,
        "OASIS_AUTOSCALER_ADMIN_PASSWORD": PASSWORD,
        "OASIS_AUTOSCALER_NUMBA_CACHE_DIR": str(numba),
        "OASIS_AUTOSCALER_DISCOVERY_SECONDS": "0.5",
        "OASIS_AUTOSCALER_POLLING_INTERVAL_SECONDS": "2",
        "OASIS_AUTOSCALER_HPA_SYNC_SECONDS": "1",
        "OASIS_AUTOSCALER_COOLDOWN_SECONDS": "3",
        "OASIS_AUTOSCALER_SCALE_DOWN_STABILIZATION_SECONDS": "2",
    }
    command = service_argv(
        "up",
        "--data-dir",
        str(root / "data"),
        "--api-port",
        str(api_port),
        "--scaler-port",
        str(scaler_port),
        "--scaler-metrics-port",
        str(free_port()),
    )
    with (root / "up.log").open("wb") as log:
        up = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        keda = KedaClient(f"127.0.0.1:{scaler_port}")
        try:
            url = f"http://127.0.0.1:{api_port}"
            wait_until(lambda: requests.get(f"{url}/healthcheck/", timeout=1).ok, "up's API", up)
            wait_until(lambda: grpc_serving(f"127.0.0.1:{scaler_port}"), "up's scaler", up)
            yield LiveStack(url, keda, up)
        finally:
            keda.close()
            up.send_signal(signal.SIGINT)
            assert up.wait(timeout=180) == 0, (root / "up.log").read_text()[-3000:]


def new_model(stack: LiveStack, scaling: dict[str, Any]) -> tuple[int, str]:
    client = stack.client()
    model = client.models.create("Live", f"M{uuid.uuid4().hex[:8]}", "1").json()
    client.models.settings.post(model["id"], model_settings())
    client.models.chunking_configuration.post(model["id"], CHUNKING)
    client.models.scaling_configuration.post(model["id"], scaling)
    queue = str(model["queue_name"])
    # The scaler knows a model at its next read of the API's metrics (every 0.5 s).
    wait_until(lambda: _known(stack.keda, queue), f"the scaler to know {queue}", deadline=10)
    return int(model["id"]), queue


def _known(keda: KedaClient, queue: str) -> bool:
    try:
        keda.ask(queue)
    except grpc.RpcError as error:
        if error.code() is grpc.StatusCode.NOT_FOUND:
            return False
        raise
    return True


def new_analysis(stack: LiveStack, model: int) -> int:
    client = stack.client()
    portfolio = client.portfolios.create(f"p-{uuid.uuid4().hex[:6]}").json()["id"]
    client.portfolios.location_file.post(
        portfolio, demo_locations(10).encode(), content_type="text/csv"
    )
    analysis: int = client.analyses.create("live", portfolio, model).json()["id"]
    client.analyses.settings.post(analysis, demo_analysis_settings())
    return analysis


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
    queued_at = time.monotonic()
    for analysis in analyses:
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
    return str(stack.client().analyses.get(analysis).json()["status"])


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
