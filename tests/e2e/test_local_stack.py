"""`oasis-autoscaler demo` and `up`: the whole stack from one command, and nothing left after it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests
from oasislmf.platform_api.client import APIClient

from tests.support.numba import numba_cache_root
from tests.support.servers import free_port, wait_until
from worker.demo_model import demo_analysis_settings, demo_locations, model_settings

pytestmark = pytest.mark.e2e
CLI = str(Path(sys.executable).with_name("oasis-autoscaler"))


def stack_env(pytestconfig: pytest.Config) -> dict[str, str]:
    numba = numba_cache_root()
    return {
        **os.environ,
        "OASIS_AUTOSCALER_ADMIN_PASSWORD": "up-password",
        "OASIS_AUTOSCALER_NUMBA_CACHE_DIR": str(numba),
        "OASIS_AUTOSCALER_DISCOVERY_SECONDS": "0.5",
        "OASIS_AUTOSCALER_COOLDOWN_SECONDS": "3",
    }


def ports() -> list[str]:
    return [
        "--api-port",
        str(free_port()),
        "--scaler-port",
        str(free_port()),
        "--scaler-metrics-port",
        str(free_port()),
    ]


def assert_all_gone(family: list[psutil.Process]) -> None:
    stop = time.monotonic() + 30
    while any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in family):
        assert time.monotonic() < stop, "processes of the stack outlived it"
        time.sleep(0.1)  # polling with a deadline


def test_the_demo_runs_workers_up_and_down_and_leaves_nothing(
    tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    command = [CLI, "demo", "--data-dir", str(tmp_path / "data"), "--demo-locations", "20"]
    demo = subprocess.Popen(
        [*command, *ports()],
        env=stack_env(pytestconfig),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    family: dict[int, psutil.Process] = {}
    names: dict[int, str] = {}
    output = b""
    assert demo.stdout is not None
    os.set_blocking(demo.stdout.fileno(), False)
    stop = time.monotonic() + 900
    while demo.poll() is None:
        assert time.monotonic() < stop, "the demo did not end"
        output += demo.stdout.read() or b""
        for child in _children(demo.pid):
            family.setdefault(child.pid, child)
            names.setdefault(child.pid, " ".join(_cmdline(child)))
        time.sleep(0.2)  # sampling the stack's processes while it runs
    output += demo.stdout.read() or b""
    text = output.decode()
    assert demo.returncode == 0, text[-3000:]
    assert "ended RUN_COMPLETED" in text
    # The log shows the model's workers rising and then every one stopped.
    assert "workers 1 " in text or "workers 2 " in text or "workers 3 " in text
    assert text.rstrip().endswith("stopping the stack ...")
    seen = " ".join(names.values())
    assert "worker --queue OasisLMF-PiWind-1" in seen and " scaler " in seen
    assert_all_gone(list(family.values()))


def _children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def test_ctrl_c_mid_run_stops_everything_cleanly(
    tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    args = ports()
    up = subprocess.Popen(
        [CLI, "up", "--data-dir", str(tmp_path / "data"), *args],
        env=stack_env(pytestconfig),
        stdout=(tmp_path / "up.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{args[1]}"
        wait_until(lambda: requests.get(f"{url}/healthcheck/", timeout=1).ok, "up's API", up)
        client = APIClient(api_url=url, username="admin", password="up-password")
        model = client.models.create("OasisLMF", "Local", "1").json()
        client.models.settings.post(model["id"], model_settings())
        portfolio = client.portfolios.create("local").json()["id"]
        client.portfolios.location_file.post(
            portfolio, demo_locations(5).encode(), content_type="text/csv"
        )
        analysis = client.analyses.create("local", portfolio, model["id"]).json()["id"]
        client.analyses.settings.post(analysis, demo_analysis_settings())
        client.analyses.generate_and_run(analysis)
        # Stop while a worker the stand-in started is running a sub-task.
        wait_until(
            lambda: any(
                t["status"] == "STARTED" for t in client.analyses.sub_task_list(analysis).json()
            ),
            "a running sub-task",
            up,
            deadline=120,
        )
        family = _children(up.pid)
        assert any("worker --queue OasisLMF-Local-1" in " ".join(_cmdline(p)) for p in family)
    finally:
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=360) == 0
    assert_all_gone(family)
    assert "stopping the stack" in (tmp_path / "up.log").read_text()
