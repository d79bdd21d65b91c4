"""`oasis-autoscaler up` as a test runs it: the whole local stack in a child process, with the
KEDA stand-in starting real workers, and what a test reads of it."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import requests
from oasislmf.platform_api.client import APIClient
from prometheus_client.parser import text_string_to_metric_families

from cli.keda.client import KedaClient
from cli.local.launch import grpc_serving, service_argv
from tests.support.servers import free_port, wait_until
from worker.demo_model import demo_analysis_settings, demo_locations, model_settings

PASSWORD = "live-password"
# Timings that let workers rise and fall within seconds on one machine.
FAST = {
    "OASIS_AUTOSCALER_DISCOVERY_SECONDS": "0.5",
    "OASIS_AUTOSCALER_POLLING_INTERVAL_SECONDS": "2",
    "OASIS_AUTOSCALER_HPA_SYNC_SECONDS": "1",
    "OASIS_AUTOSCALER_COOLDOWN_SECONDS": "3",
}


@dataclass(frozen=True)
class Work:
    """How much an analysis asks of the kernel."""

    locations: int
    samples: int


# The demo's: with one warm worker the whole analysis takes a few seconds.
DEMO_WORK = Work(locations=10, samples=10)
# 38 s on one warm worker here, most of it the loss stage: long enough that workers started for
# its chunks are up while chunks still wait, however quick the machine.
LASTING_WORK = Work(locations=30, samples=2000)


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

    def gauges(self, *names: str) -> dict[tuple[str, str], float]:
        """(metric, model) -> value of the API's per-model gauges `names`."""
        text = requests.get(f"{self.api_url}/metrics", timeout=5).text
        return {
            (sample.name, sample.labels.get("model", "")): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name in names
        }


@contextmanager
def running_up(root: Path, numba: Path, env: Mapping[str, str]) -> Iterator[LiveStack]:
    """`up` on free loopback ports with `env` over the fast timings; stopped with Ctrl-C's
    SIGINT, which must leave it exiting 0."""
    api_port, scaler_port = free_port(), free_port()
    environment = {
        **os.environ,
        "OASIS_AUTOSCALER_ADMIN_PASSWORD": PASSWORD,
        "OASIS_AUTOSCALER_NUMBA_CACHE_DIR": str(numba),
        **FAST,
        **env,
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
        up = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT)
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


def new_model(
    stack: LiveStack, scaling: dict[str, Any], chunking: dict[str, Any]
) -> tuple[int, str]:
    client = stack.client()
    model = client.models.create("Live", f"M{uuid.uuid4().hex[:8]}", "1").json()
    client.models.settings.post(model["id"], model_settings())
    client.models.chunking_configuration.post(model["id"], chunking)
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


def new_analysis(
    stack: LiveStack, model: int, priority: int | None = None, work: Work = DEMO_WORK
) -> int:
    client = stack.client()
    portfolio = client.portfolios.create(f"p-{uuid.uuid4().hex[:6]}").json()["id"]
    client.portfolios.location_file.post(
        portfolio, demo_locations(work.locations).encode(), content_type="text/csv"
    )
    analyses = client.analyses
    if priority is None:
        analysis: int = analyses.create("live", portfolio, model).json()["id"]
    else:
        # The client's create() sends no priority: the same body with one.
        body = {"name": "live", "portfolio": portfolio, "model": model, "priority": priority}
        created = analyses.session.post(analyses.url_endpoint, json=body)
        assert created.status_code == 201, created.text
        analysis = created.json()["id"]
    analyses.settings.post(analysis, demo_analysis_settings(work.samples))
    return analysis


def status(stack: LiveStack, analysis: int) -> str:
    return str(stack.client().analyses.get(analysis).json()["status"])
