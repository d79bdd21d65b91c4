"""Faults under the scaler: Redis and the API killed and brought back, each strategy watched.

The scaler runs as its own process, scraping a real API over a real Redis. A KEDA-shaped client
keeps asking about three models (one per strategy, each with queued work and no workers) while
Redis, then the API, then both are killed with SIGKILL and started again on the same ports.
Every call must answer within KEDA's 3 s budget: from the last good state while it is younger
than max_age, then UNAVAILABLE (so KEDA's fallback applies); and the scaler must recover alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psutil
import pytest
from oasislmf.platform_api.client import APIClient

from cli.keda.client import CALL_TIMEOUT_SECONDS, KedaClient
from cli.local.launch import grpc_serving, scaler_argv
from tests.support.servers import api_server, free_port, redis_server, stop_process, wait_until
from worker.demo_model import demo_analysis_settings, demo_locations, model_settings

pytestmark = pytest.mark.e2e
PASSWORD = "faults-pw"
MAX_AGE = 6.0
# strategy -> (configuration, workers wanted with two analyses queued and no sub-task yet)
STRATEGIES: dict[str, tuple[dict[str, Any], int]] = {
    "FIXED_WORKERS": ({"scaling_strategy": "FIXED_WORKERS", "worker_count_fixed": 3}, 3),
    "QUEUE_LOAD": ({"scaling_strategy": "QUEUE_LOAD", "worker_count_max": 5}, 2),
    "DYNAMIC_TASKS": (
        {"scaling_strategy": "DYNAMIC_TASKS", "chunks_per_worker": 2, "worker_count_max": 5},
        1,
    ),
}


@dataclass
class Platform:
    root: Path
    redis_port: int
    api_port: int
    scaler_address: str
    # What the fixture stops at the end, restarted servers included.
    stack: ExitStack
    keda: KedaClient = field(init=False)
    expected: dict[str, int] = field(default_factory=dict)  # queue -> workers wanted

    def start_redis(self) -> str:
        return self.stack.enter_context(redis_server(self.root, port=self.redis_port))

    def start_api(self, redis_url: str) -> str:
        return self.stack.enter_context(
            api_server(
                self.root / "data",
                database_url=None,
                redis_url=redis_url,
                password=PASSWORD,
                port=self.api_port,
            )
        )


def listener(port: int) -> int | None:
    for connection in psutil.net_connections(kind="tcp"):
        if connection.laddr and connection.laddr.port == port and connection.status == "LISTEN":
            return connection.pid
    return None


def kill_listener(port: int) -> None:
    """SIGKILL the process listening on `port`, as an OOM kill or a node loss would."""
    pid = listener(port)
    assert pid is not None, f"nothing listens on {port}"
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: listener(port) is None, f"the port {port} to close")


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("faults")
    (root / "data").mkdir()
    redis_port, api_port, scaler_port = free_port(), free_port(), free_port()
    with ExitStack() as stack:
        platform = Platform(root, redis_port, api_port, f"127.0.0.1:{scaler_port}", stack)
        redis_url = platform.start_redis()
        api_url = platform.start_api(redis_url)
        platform.expected = {
            _queued_model(api_url, config): wanted for config, wanted in STRATEGIES.values()
        }
        scaler = _start_scaler(root, scaler_port, api_url)
        stack.callback(stop_process, scaler)
        wait_until(lambda: grpc_serving(platform.scaler_address), "the scaler", scaler)
        platform.keda = KedaClient(platform.scaler_address)
        stack.callback(platform.keda.close)
        yield platform


def _start_scaler(root: Path, port: int, api_url: str) -> subprocess.Popen[bytes]:
    command = scaler_argv(
        port,
        free_port(),
        "--scrape-target",
        f"{api_url}/metrics",
        "--max-age-seconds",
        str(MAX_AGE),
    )
    log = (root / "scaler.log").open("wb")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def _queued_model(api_url: str, scaling: dict[str, Any]) -> str:
    """A model with two analyses queued for input generation and no worker to take them."""
    client = APIClient(api_url=api_url, username="admin", password=PASSWORD)
    model = client.models.create("Faults", f"M{uuid.uuid4().hex[:8]}", "1").json()
    client.models.settings.post(model["id"], model_settings())
    client.models.scaling_configuration.post(model["id"], scaling)
    for _ in range(2):
        portfolio = client.portfolios.create("p").json()["id"]
        client.portfolios.location_file.post(
            portfolio, demo_locations(3).encode(), content_type="text/csv"
        )
        analysis = client.analyses.create("a", portfolio, model["id"]).json()["id"]
        client.analyses.settings.post(analysis, demo_analysis_settings())
        client.analyses.generate(analysis)
    return str(model["queue_name"])


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.monotonic()
    try:
        result = call()
    except grpc.RpcError as error:
        result = error
    return time.monotonic() - started, result


def answers(platform: Platform) -> dict[str, Any]:
    """Every model's answer (or error), each within KEDA's budget."""
    found = {}
    for queue in platform.expected:
        seconds, result = timed(lambda q=queue: platform.keda.ask(q))
        assert seconds <= CALL_TIMEOUT_SECONDS, f"{queue}: {seconds:.2f} s"
        found[queue] = result
    return found


def assert_answers_right(platform: Platform) -> None:
    for queue, answer in answers(platform).items():
        assert not isinstance(answer, grpc.RpcError), f"{queue}: {answer}"
        assert (answer.metric, answer.active) == (platform.expected[queue], True), queue


def recovered(platform: Platform) -> bool:
    found = answers(platform)
    return all(
        not isinstance(a, grpc.RpcError) and a.metric == platform.expected[q]
        for q, a in found.items()
    )


def test_every_strategy_answers_before_any_fault(platform: Platform) -> None:
    wait_until(lambda: recovered(platform), "the first answers", deadline=10)
    assert_answers_right(platform)


def test_redis_killed_then_back(platform: Platform) -> None:
    kill_listener(platform.redis_port)
    # The API still publishes the database's numbers: answers stay right, and stay fast.
    until = time.monotonic() + MAX_AGE + 2
    while time.monotonic() < until:
        assert_answers_right(platform)
    platform.start_redis()
    wait_until(lambda: recovered(platform), "the scaler after Redis came back", deadline=15)
    assert_answers_right(platform)


def test_the_api_killed_answers_from_memory_then_unavailable_then_recovers(
    platform: Platform,
) -> None:
    # The state's age counts from its last good read, before the kill began: finding the
    # listener to kill takes a moment, and a scrape may time out (0.25 s) on a loaded machine.
    killing = time.monotonic()
    kill_listener(platform.api_port)
    # Younger than max_age: the last good state answers.
    while time.monotonic() - killing < MAX_AGE - 2.5:
        assert_answers_right(platform)
    # Older: UNAVAILABLE, quickly, naming the source, so that KEDA's fallback applies.
    wait_until(
        lambda: all(isinstance(a, grpc.RpcError) for a in answers(platform).values()),
        "UNAVAILABLE after max_age",
        deadline=MAX_AGE + 5,
    )
    for answer in answers(platform).values():
        assert answer.code() is grpc.StatusCode.UNAVAILABLE
        assert "the metrics source has failed" in answer.details()
    # Health follows at the refresher's next read (every 0.5 s): probes see the stale state too.
    wait_until(lambda: not grpc_serving(platform.scaler_address), "NOT_SERVING", deadline=3)
    platform.start_api(f"redis://127.0.0.1:{platform.redis_port}/0")
    wait_until(lambda: recovered(platform), "the scaler after the API came back", deadline=15)
    assert grpc_serving(platform.scaler_address)


def test_both_killed_at_once_then_back(platform: Platform) -> None:
    kill_listener(platform.api_port)
    kill_listener(platform.redis_port)
    wait_until(
        lambda: all(isinstance(a, grpc.RpcError) for a in answers(platform).values()),
        "UNAVAILABLE after max_age",
        deadline=MAX_AGE + 5,
    )
    platform.start_api(platform.start_redis())
    wait_until(lambda: recovered(platform), "the scaler after both came back", deadline=15)
    assert_answers_right(platform)
