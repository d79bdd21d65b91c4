"""`oasis-autoscaler up`: the whole stack from one command, and nothing left after Ctrl-C."""

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

from tests.support.servers import free_port, wait_for
from worker.demo_model import demo_analysis_settings, demo_locations, model_settings

pytestmark = pytest.mark.e2e


def test_up_runs_an_analysis_and_stops_cleanly(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    port = free_port()
    numba = pytestconfig.cache.mkdir("oasis-kernel-numba").absolute()  # type: ignore[union-attr]
    env = {
        **os.environ,
        "OASIS_AUTOSCALER_ADMIN_PASSWORD": "up-password",
        "OASIS_AUTOSCALER_NUMBA_CACHE_DIR": str(numba),
        "OASIS_AUTOSCALER_DISCOVERY_SECONDS": "0.5",
    }
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("oasis-autoscaler")),
            "up",
            "--data-dir",
            str(tmp_path / "data"),
            "--api-port",
            str(port),
            "--workers-per-model",
            "1",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: requests.get(f"{url}/healthcheck/", timeout=1).ok, "up's API", up)
        client = APIClient(api_url=url, username="admin", password="up-password")
        model = client.models.create("OasisLMF", "Local", "1").json()
        client.models.settings.post(model["id"], model_settings())
        portfolio = client.portfolios.create("local").json()["id"]
        client.portfolios.location_file.post(
            portfolio, demo_locations(5).encode(), content_type="text/csv"
        )
        analysis = client.analyses.create("local", portfolio, model["id"]).json()["id"]
        client.analyses.settings.post(analysis, demo_analysis_settings())
        assert client.run_generate(analysis, poll_interval=0.5) is True
        assert client.run_analysis(analysis, poll_interval=0.5) is True
        family = psutil.Process(up.pid).children(recursive=True)
        names = " ".join(" ".join(p.cmdline()) for p in family)
        assert "redis-server" in names and " api " in names and "worker --queue" in names
    finally:
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=120) == 0
        log.close()
    stop = time.monotonic() + 30
    while any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in family):
        assert time.monotonic() < stop, "processes of the stack outlived it"
        time.sleep(0.1)  # polling with a deadline
    assert "stopping the stack" in (tmp_path / "up.log").read_text()
