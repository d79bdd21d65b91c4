"""The worker pod's probe command, run for real against a real worker on a real Redis.

In its pod the worker is the container's first process (pid 1) and the host name is the pod's;
the probe pings the Celery node `<queue>.1@$HOSTNAME`. Here the worker runs as pid 1 of its own
PID namespace (`unshare`, we are root), so the node name is the one it has in a pod, and the
probe command is taken verbatim from the generated Deployment.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from scaler.manifests import worker_manifests
from scaler.worker_spec import WorkerSpec
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


def probe(redis_url: str, hostname: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "OASIS_AUTOSCALER_REDIS_URL": redis_url,
        "OASIS_AUTOSCALER_QUEUE": SPEC.queue,
        "HOSTNAME": hostname,
    }
    return subprocess.run(probe_command(), env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def worker_as_pid_1(redis_url: str, tmp_path: Path) -> Iterator[Path]:
    unshare = shutil.which("unshare")
    assert unshare, "unshare (util-linux) is needed to run the worker as pid 1"
    data = tmp_path / "data"
    env = {
        **os.environ,
        "OASIS_AUTOSCALER_DATA_DIR": str(data),
        "OASIS_AUTOSCALER_REDIS_URL": redis_url,
        "OASIS_AUTOSCALER_QUEUE": SPEC.queue,
    }
    # --kill-child: when unshare goes, the worker (pid 1 of the namespace) gets SIGTERM.
    process = subprocess.Popen(
        [
            unshare,
            "--pid",
            "--mount-proc",
            "--kill-child=SIGTERM",
            str(BIN / "oasis-autoscaler"),
            "worker",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "worker.log").open("w"),
    )
    try:
        yield data
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        wait_until_unused(data)


def test_the_probe_passes_for_this_pods_worker_only(redis_url: str, worker_as_pid_1: Path) -> None:
    hostname = socket.gethostname()
    # The worker registers its presence once Celery is ready (worker/presence.py).
    registered = presence.key(f"{SPEC.queue}.1@{hostname}")
    client = Redis.from_url(redis_url)
    stop = time.monotonic() + DEADLINE
    while not client.exists(registered):
        assert time.monotonic() < stop, "the worker did not start"
        time.sleep(0.1)  # polling with a deadline while the worker starts
    done = probe(redis_url, hostname)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{SPEC.queue}.1@{hostname}: OK" in done.stdout
    # Another pod's probe (another host name) does not count this worker.
    other = probe(redis_url, "worker-elsewhere-7d9f")
    assert other.returncode != 0
