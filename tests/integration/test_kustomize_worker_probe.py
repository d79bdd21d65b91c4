"""The worker pod's probe command, run for real against a real worker on a real Redis.

In its pod the worker is given the pod's name (the downward API) and takes the Celery node name
`<queue>@<pod name>`, which the probe pings. Here the worker runs with a pod name as it would in
its pod, and the probe command is taken verbatim from the generated Deployment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from cli.manifests.generator import worker_manifests
from cli.manifests.worker_spec import WorkerSpec
from tests.support.processes import wait_until_unused
from worker import presence

pytestmark = pytest.mark.integration

SPEC = WorkerSpec("Probe", "Model", "1")
DEADLINE = 90.0
BIN = Path(sys.executable).parent


def probe_command() -> list[str]:
    deployment = worker_manifests(SPEC)[0]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    command: list[str] = container["livenessProbe"]["exec"]["command"]
    assert command == container["readinessProbe"]["exec"]["command"]
    return command


POD = "oasislmf-piwind-1-7d9f8c6b5-x2x4q"


def probe(redis_url: str, pod: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "OASIS_AUTOSCALER_REDIS_URL": redis_url,
        "OASIS_AUTOSCALER_QUEUE": SPEC.queue,
        "OASIS_AUTOSCALER_POD_NAME": pod,
    }
    return subprocess.run(probe_command(), env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def worker_in_pod(redis_url: str, tmp_path: Path) -> Iterator[Path]:
    data = tmp_path / "data"
    env = {
        **os.environ,
        "OASIS_AUTOSCALER_DATA_DIR": str(data),
        "OASIS_AUTOSCALER_REDIS_URL": redis_url,
        "OASIS_AUTOSCALER_QUEUE": SPEC.queue,
        # Without a namespace the pod-deletion-cost marker stays off: no Kubernetes API here.
        "OASIS_AUTOSCALER_POD_NAME": POD,
    }
    process = subprocess.Popen(
        [str(BIN / "oasis-autoscaler"), "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "worker.log").open("w"),
        start_new_session=True,
    )
    try:
        yield data
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        wait_until_unused(data)


def test_the_probe_passes_for_this_pods_worker_only(redis_url: str, worker_in_pod: Path) -> None:
    # The worker registers its presence once Celery is ready (worker/presence.py).
    registered = presence.key(f"{SPEC.queue}@{POD}")
    client = Redis.from_url(redis_url)
    stop = time.monotonic() + DEADLINE
    while not client.exists(registered):
        assert time.monotonic() < stop, "the worker did not start"
        time.sleep(0.1)  # polling with a deadline while the worker starts
    done = probe(redis_url, POD)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{SPEC.queue}@{POD}: OK" in done.stdout
    # Another pod's probe (another pod name) does not count this worker.
    other = probe(redis_url, "oasislmf-piwind-1-7d9f8c6b5-elsewhere")
    assert other.returncode != 0
