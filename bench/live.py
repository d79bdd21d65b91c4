"""What the live-scaling benchmarks (activation.py, config_change.py, getmetrics.py) share.

The servers they run for real on 127.0.0.1 (the scaler with its default settings, and for two
of them a private Redis and the API on SQLite), the percentiles and the summary table their
figures are printed in, the load average printed with them, and the bound on a run's time.
Import it as `bench.live` once the repository is on sys.path (as each script puts it there).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
from oasislmf.platform_api.client import APIClient  # type: ignore[import-untyped]

from cli.keda.client import Answer, KedaClient
from cli.local.launch import (
    api_server,
    free_port,
    grpc_serving,
    redis_server,
    scaler_argv,
    stop_process,
    wait_until,
)
from scaler.settings import ScalerSettings
from worker.demo_model import demo_locations

PASSWORD = "bench-password"
TARGET_P99_SECONDS = 1.0
REFRESH_SECONDS = ScalerSettings().interval_seconds
POLL_SECONDS = 0.01
# Every run of a script is bounded, whatever the machine does.
RUN_DEADLINE_SECONDS = 600.0

# A row of the latency table: its label and its times in seconds.
Row = tuple[str, Sequence[float]]


# --- the run ------------------------------------------------------------------------------------


def arguments(doc: str) -> argparse.ArgumentParser:
    """A parser described by the first line of the script's docstring."""
    return argparse.ArgumentParser(description=doc.splitlines()[0])


def add_run_flags(parser: argparse.ArgumentParser, quick: str) -> None:
    """`--quick` (what the smoke run does, said by `quick`) and `--check`, last of the flags."""
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--check", action="store_true", help="exit 1 when the target is missed")


def give_up_after(seconds: float) -> None:
    """A hung run ends with an error, its servers stopped on the way out."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"the benchmark did not end within {seconds:g} s")

    signal.signal(signal.SIGALRM, expire)
    signal.alarm(int(seconds))


def bounded_run() -> LoadAverage:
    """Bound the run by RUN_DEADLINE_SECONDS; the load average from its start."""
    give_up_after(RUN_DEADLINE_SECONDS)
    return LoadAverage()


class LoadAverage:
    """The 1-minute load average from the start of a run: slow figures on a busy machine say so."""

    def __init__(self) -> None:
        self.start: float = os.getloadavg()[0]

    def summary(self, note: str = "") -> str:
        return (
            f"load average (1 min) {self.start:.2f} at the start,"
            f" {os.getloadavg()[0]:.2f} at the end ({os.cpu_count()} CPUs{note})"
        )


# --- the servers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scaler:
    address: str
    metrics_url: str


@contextmanager
def scaler_process(root: Path, scrape_target: str) -> Iterator[Scaler]:
    """`oasis-autoscaler scaler` with its default settings, scraping `scrape_target`."""
    port, metrics_port = free_port(), free_port()
    command = scaler_argv(port, metrics_port, "--scrape-target", scrape_target)
    with (root / "scaler.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            address = f"127.0.0.1:{port}"
            # SERVING once its first read of its source is in.
            wait_until(lambda: grpc_serving(address), "the scaler", process)
            yield Scaler(address, f"http://127.0.0.1:{metrics_port}/metrics")
        finally:
            stop_process(process)


@dataclass(frozen=True)
class Stack:
    client: APIClient
    scaler: Scaler


@contextmanager
def api_stack(prefix: str) -> Iterator[Stack]:
    """A private Redis, the API on SQLite and the scaler reading the API's /metrics, in a
    temporary folder named with `prefix`; the API's client logged in as the admin."""
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        root = Path(folder)
        with (
            redis_server(root) as redis_url,
            api_server(
                root / "data", database_url=None, redis_url=redis_url, password=PASSWORD
            ) as api_url,
            scaler_process(root, f"{api_url}/metrics") as scaler,
        ):
            client = APIClient(api_url=api_url, username="admin", password=PASSWORD)
            yield Stack(client, scaler)


@dataclass(frozen=True)
class Registered:
    analysis: int
    model_id: int
    queue: str


def new_analysis(client: APIClient, kind: str) -> Registered:
    """A new model (FIXED_WORKERS, one worker by default) and an analysis of it on 10 demo
    locations, not queued yet; `kind` starts the model's name."""
    name = uuid.uuid4().hex[:8]
    model = client.models.create("Bench", f"{kind}{name}", "1").json()
    portfolio = client.portfolios.create(f"bench-{name}").json()["id"]
    client.portfolios.location_file.post(
        portfolio, demo_locations(10).encode(), content_type="text/csv"
    )
    analysis = client.analyses.create(f"bench-{name}", portfolio, model["id"]).json()["id"]
    return Registered(int(analysis), int(model["id"]), str(model["queue_name"]))


# --- measuring ----------------------------------------------------------------------------------


def asked(keda: KedaClient, model: str) -> Answer | None:
    """The scaler's answer for `model`, or None while it does not know the model yet."""
    try:
        return keda.ask(model)
    except grpc.RpcError as error:
        if error.code() is grpc.StatusCode.NOT_FOUND:
            return None
        raise


def poll_until(check: Callable[[], bool], what: str, deadline: float) -> float:
    """Ask `check` every 10 ms until it holds; the moment it first did (monotonic)."""
    give_up = time.monotonic() + deadline
    while True:
        began = time.monotonic()
        if check():
            return time.monotonic()
        if began > give_up:
            raise TimeoutError(f"{what}: not within {deadline} s")
        time.sleep(max(0.0, began + POLL_SECONDS - time.monotonic()))  # the polling period


# --- the report ---------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), interpolated between the closest ranks."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_report(
    title: str,
    post: Sequence[float],
    ours: Row,
    baseline: Row,
    load: LoadAverage,
    *,
    measured: Sequence[Row] = (),
) -> bool:
    """The table of the POST's time, ours (with the target's verdict), the other `measured` rows
    and the baseline, then the two p50s' ratio and the load; whether ours met the target."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for name in ("path", "p50", "p99", "max", "target", "verdict"):
        table.add_column(name, justify="left" if name == "path" else "right")
    passed = percentile(ours[1], 99) <= TARGET_P99_SECONDS
    rows = (
        ("POST answered (for reference)", post, "", ""),
        (*ours, f"p99 <= {TARGET_P99_SECONDS:g} s", "PASS" if passed else "FAIL"),
        *((*row, "", "") for row in measured),
        (*baseline, "", ""),
    )
    for label, values, target, verdict in rows:
        table.add_row(
            label,
            f"{percentile(values, 50):.3f}",
            f"{percentile(values, 99):.3f}",
            f"{max(values):.3f}",
            target,
            verdict,
        )
    console = Console(width=120)
    console.print(table)
    ratio = percentile(baseline[1], 50) / percentile(ours[1], 50)
    console.print(
        f"baseline p50 / ours p50: {ratio:.0f}x; scaler refresh every {REFRESH_SECONDS:g} s;"
        f" {load.summary()}",
        soft_wrap=True,
    )
    return passed
