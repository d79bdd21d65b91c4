"""`up` survives what a machine does to it: a child that cannot start, its own Redis killed mid-run,
and being SIGKILLed itself (nothing of the stack may outlive it)."""

from __future__ import annotations

import io
import signal
import socket
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from oasislmf.platform_api.client import APIClient

from tests.e2e.test_local_stack import CLI, _children, _cmdline, assert_all_gone, stack_env
from tests.support.servers import free_port, wait_until
from worker.demo_model import demo_analysis_settings, demo_locations, model_settings

pytestmark = pytest.mark.e2e


def start_up(tmp_path: Path, pytestconfig: pytest.Config, *flags: str) -> tuple[Any, str]:
    api_port = free_port()
    up = subprocess.Popen(
        [CLI, "up", "--data-dir", str(tmp_path / "data"), "--api-port", str(api_port), *flags],
        env=stack_env(pytestconfig),
        stdout=(tmp_path / "up.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{api_port}"
    wait_until(lambda: requests.get(f"{url}/healthcheck/", timeout=1).ok, "up's API", up)
    return up, url


# A loss chunk of this analysis runs for seconds on a warm worker (the demo's, half a second),
# long enough to be seen running and killed under.
SAMPLES = 1000


def run_analysis(client: APIClient, model: int, name: str) -> int:
    portfolio = client.portfolios.create(name).json()["id"]
    client.portfolios.location_file.post(
        portfolio, demo_locations(10).encode(), content_type="text/csv"
    )
    analysis = client.analyses.create(name, portfolio, model).json()["id"]
    client.analyses.settings.post(analysis, demo_analysis_settings(SAMPLES))
    client.analyses.generate_and_run(analysis)
    return int(analysis)


def status(client: APIClient, analysis: int) -> str:
    return str(client.analyses.get(analysis).json()["status"])


def output_files(url: str, client: APIClient, analysis: int) -> dict[str, bytes]:
    answer = client.api.get(f"{url}/v2/analyses/{analysis}/output_file/")
    assert answer.status_code == 200, answer.text
    with tarfile.open(fileobj=io.BytesIO(answer.content)) as tar:
        return {
            Path(m.name).name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile() and m.name.endswith(".csv")
        }


def test_a_child_that_cannot_start_is_one_line_at_once(
    tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    """The scaler's metrics port is held (an earlier stack's orphan, say): the scaler exits at
    once, and so does `up`, with its reason and log in one line, no traceback, no 60 s wait."""
    with socket.create_server(("127.0.0.1", 0)) as held:
        port = held.getsockname()[1]
        began = time.monotonic()
        done = subprocess.run(
            [CLI, "up", "--data-dir", str(tmp_path / "data"), "--scaler-metrics-port", str(port)],
            env=stack_env(pytestconfig),
            capture_output=True,
            text=True,
            timeout=120,
        )
        took = time.monotonic() - began
    assert done.returncode == 2, done.stdout + done.stderr
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith("error: scaler exited with status")
    assert "Address already in use" in errors[0] and "scaler.log" in errors[0]
    assert "Traceback" not in done.stdout + done.stderr
    assert took < 45, f"up took {took:.0f} s to report a child that exited at once"


def test_up_killed_leaves_no_process_of_its_stack(
    tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    up, url = start_up(tmp_path, pytestconfig)
    try:
        client = APIClient(api_url=url, username="admin", password="up-password")
        model = client.models.create("OasisLMF", "Warm", "1").json()
        client.models.scaling_configuration.post(
            model["id"], {"scaling_strategy": "FIXED_WORKERS", "worker_count_min": 1}
        )
        # The floor of 1 starts a worker with no work; wait until it is there.
        wait_until(
            lambda: any(
                "worker --queue OasisLMF-Warm-1" in " ".join(_cmdline(p)) for p in _children(up.pid)
            ),
            "the model's warm worker",
            up,
            deadline=120,
        )
        family = _children(up.pid)
        names = " ".join(" ".join(_cmdline(p)) for p in family)
        assert "redis-server" in names and " scaler " in names and " api " in names
    finally:
        up.kill()  # SIGKILL: up cannot stop anything itself
        up.wait()
    assert_all_gone(family)
    # Not one process of any of their sessions either (Celery's pool processes included).
    sessions = {p.pid for p in family}
    left = [p for p in psutil.process_iter() if _session(p) in sessions and p.status() != "zombie"]
    assert left == []


def _session(process: psutil.Process) -> int | None:
    try:
        return int(Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()[4])
    except (OSError, IndexError, ValueError):
        return None


# Two analyses, one after the other: more than the default 300 s on a loaded 2-core machine.
@pytest.mark.timeout(900)
def test_redis_killed_mid_run_loses_no_work(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    """SIGKILL `up`'s Redis while a chunk runs: `up` restarts it (its queues come back from its
    append-only file) and the analysis completes with the outputs of an undisturbed run."""
    up, url = start_up(tmp_path, pytestconfig)
    try:
        client = APIClient(api_url=url, username="admin", password="up-password")
        model = client.models.create("OasisLMF", "Broker", "1").json()["id"]
        client.models.settings.post(model, model_settings())
        client.models.chunking_configuration.post(
            model, {"fixed_lookup_chunks": 2, "fixed_analysis_chunks": 2}
        )
        client.models.scaling_configuration.post(
            model, {"scaling_strategy": "FIXED_WORKERS", "worker_count_fixed": 2}
        )
        calm = run_analysis(client, model, "undisturbed")
        wait_until(lambda: status(client, calm) == "RUN_COMPLETED", "the calm run", up, 600)

        stormy = run_analysis(client, model, "broker killed")
        wait_until(lambda: loss_chunk_running(client, stormy), "a running loss chunk", up, 600)
        redis = next(p for p in _children(up.pid) if "redis-server" in " ".join(_cmdline(p)))
        redis.send_signal(signal.SIGKILL)
        wait_until(lambda: status(client, stormy) == "RUN_COMPLETED", "the stormy run", up, 600)
        assert output_files(url, client, stormy) == output_files(url, client, calm)
        assert up.poll() is None, "up ended"
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=360)
    log = (tmp_path / "up.log").read_text()
    assert "redis restarted" in log, log[-3000:]


def loss_chunk_running(client: APIClient, analysis: int) -> bool:
    """A loss chunk of the analysis runs; an error if its run ended before one was seen."""
    tasks = client.analyses.sub_task_list(analysis).json()
    if any(
        t["status"] == "STARTED" and t["slug"].startswith("generate-losses-chunk") for t in tasks
    ):
        return True
    assert status(client, analysis) != "RUN_COMPLETED", "the run ended before a chunk was seen"
    return False
