"""Benchmark: from `POST generate_inputs/` to the `true` on a held-open StreamIsActive.

Everything runs for real on 127.0.0.1: a private Redis, the API (`oasis-autoscaler api`, SQLite)
and the scaler (`oasis-autoscaler scaler`, its default settings: it scrapes the API's /metrics
every 0.5 s). The real `oasislmf` client registers one model (FIXED_WORKERS, one worker), a
portfolio with a location file and an analysis. No worker runs: a queued analysis is work enough
for the model to wake. A KEDA-shaped client (`scaler.keda_client.KedaClient`) holds one
StreamIsActive open on the model for the whole run, as KEDA does for an `external-push` trigger.

Each try, at a random moment of the scaler's refresh cycle (a seeded wait of 0 to 0.5 s, so the
tries do not fall in step with it):

1. the clock starts just before `POST /v2/analyses/{id}/generate_inputs/` is sent;
2. ours (measured): the moment the stream's `true` arrives;
3. right after the POST returns, IsActive is polled every 10 ms: the moment its first `true`
   answer arrives is when the scaler could first tell a poller (that call's own answer time
   included);
4. the analysis is cancelled (`cancel/`), and the next try waits until IsActive says inactive.

The baseline is the poll-only path at KEDA's default polling interval (30 s), computed, not
waited for (50 tries would take 25 minutes): KEDA's polls come every 30 s at a phase that has
nothing to do with the POST, so the model wakes at the first poll after the scaler knows, a
uniform wait on [0, 30 s) after it. Each try's baseline is that try's measured time of step 3
plus a uniform draw from a seeded RNG. (Our own ScaledObject polls every 15 s, see
scaler/keda_timing.py: `--polling-seconds 15` gives that baseline.)

    .venv/bin/python bench/activation.py [--tries 50] [--seed 1] [--polling-seconds 30] [--quick]
        [--check]

With `--check` the script exits 1 when the target (p99 of ours <= 1 s) is missed.
"""

from __future__ import annotations

import argparse
import os
import queue
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.support (the test servers) is not an installed package

from oasislmf.platform_api.client import APIClient  # type: ignore[import-untyped]  # noqa: E402

from scaler.keda_client import KedaClient  # noqa: E402
from scaler.local.stack import serving  # noqa: E402
from scaler.settings import ScalerSettings  # noqa: E402
from scaler.sources import text_samples  # noqa: E402
from tests.support.servers import (  # noqa: E402
    api_server,
    free_port,
    redis_server,
    stop,
    wait_for,
)
from worker.demo_model import demo_locations  # noqa: E402

PASSWORD = "bench-password"
TARGET_P99_SECONDS = 1.0
# KEDA's default pollingInterval (a ScaledObject that sets none); ours sets its own.
KEDA_DEFAULT_POLLING_SECONDS = 30.0
REFRESH_SECONDS = ScalerSettings().interval_seconds
POLL_SECONDS = 0.01
TRY_DEADLINE_SECONDS = 10.0
# Every run of the script is bounded, whatever the machine does.
RUN_DEADLINE_SECONDS = 600.0


@dataclass
class Tries:
    """Per try, seconds from just before the POST was sent."""

    post: list[float] = field(default_factory=list)
    pushed: list[float] = field(default_factory=list)
    polled: list[float] = field(default_factory=list)


# --- the stack ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scaler:
    address: str
    metrics_url: str


@contextmanager
def scaler_process(root: Path, scrape_target: str) -> Iterator[Scaler]:
    """`oasis-autoscaler scaler` with its default settings, scraping `scrape_target`."""
    port, metrics_port = free_port(), free_port()
    command = [
        str(Path(sys.executable).with_name("oasis-autoscaler")),
        "scaler",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--metrics-port",
        str(metrics_port),
        "--scrape-target",
        scrape_target,
    ]
    with (root / "scaler.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            address = f"127.0.0.1:{port}"
            # SERVING once its first read of the API is in.
            wait_for(lambda: serving(address), "the scaler", process)
            yield Scaler(address, f"http://127.0.0.1:{metrics_port}/metrics")
        finally:
            stop(process)


def open_streams(scaler: Scaler) -> float:
    """The scaler's own count of open StreamIsActive calls."""
    text = requests.get(scaler.metrics_url, timeout=5).text
    return sum(s.value for s in text_samples(text) if s.name == "oasis_scaler_open_streams")


def queued_analysis(client: APIClient) -> tuple[int, str]:
    """A new model (FIXED_WORKERS, one worker by default) and an analysis ready to queue."""
    name = uuid.uuid4().hex[:8]
    model = client.models.create("Bench", f"Act{name}", "1").json()
    portfolio = client.portfolios.create(f"bench-{name}").json()["id"]
    client.portfolios.location_file.post(
        portfolio, demo_locations(10).encode(), content_type="text/csv"
    )
    analysis = client.analyses.create(f"bench-{name}", portfolio, model["id"]).json()["id"]
    return int(analysis), str(model["queue_name"])


# --- measuring ----------------------------------------------------------------------------------


class Follower:
    """A StreamIsActive held open as KEDA holds it; the arrival time of each `true`."""

    def __init__(self, keda: KedaClient, model: str) -> None:
        self.pushes: queue.Queue[float] = queue.Queue()
        self._stream = keda.stream(model)
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self) -> None:
        try:
            for active in self._stream:
                if active:
                    self.pushes.put(time.monotonic())
        except grpc.RpcError:
            pass  # the scaler stopped: the run is over

    def drain(self) -> None:
        while not self.pushes.empty():
            self.pushes.get_nowait()


def poll_until(check: Callable[[], bool], what: str) -> float:
    """Ask `check` every 10 ms until it holds; the moment it first did (monotonic)."""
    deadline = time.monotonic() + TRY_DEADLINE_SECONDS
    while True:
        asked = time.monotonic()
        if check():
            return time.monotonic()
        if asked > deadline:
            raise TimeoutError(f"{what}: not within {TRY_DEADLINE_SECONDS} s")
        time.sleep(max(0.0, asked + POLL_SECONDS - time.monotonic()))  # the polling period


def one_try(
    client: APIClient, keda: KedaClient, follower: Follower, analysis: int, model: str
) -> tuple[float, float, float]:
    """Queue the analysis, time the push and the first polled `true`, then cancel it."""
    ref = keda.ref(model)

    def active() -> bool:
        return bool(keda.stub.IsActive(ref, timeout=1).result)

    follower.drain()
    began = time.monotonic()
    client.analyses.generate(analysis).raise_for_status()
    posted = time.monotonic()
    polled = poll_until(active, "IsActive after the POST")
    pushed = follower.pushes.get(timeout=TRY_DEADLINE_SECONDS)
    client.analyses.cancel(analysis).raise_for_status()
    poll_until(lambda: not active(), "IsActive after the cancel")
    return posted - began, pushed - began, polled - began


def measure(client: APIClient, scaler: Scaler, tries: int, rng: random.Random) -> Tries:
    analysis, model = queued_analysis(client)
    keda, stream_keda = KedaClient(scaler.address), KedaClient(scaler.address)
    try:
        # The scaler knows the model at its next read of the API's metrics.
        wait_for(lambda: _known(keda, model), f"the scaler to know {model}", deadline=10)
        follower = Follower(stream_keda, model)
        wait_for(lambda: open_streams(scaler) >= 1, "the StreamIsActive to open", deadline=10)
        results = Tries()
        for number in range(tries):
            time.sleep(rng.uniform(0, REFRESH_SECONDS))  # a random phase of the refresh cycle
            post, pushed, polled = one_try(client, keda, follower, analysis, model)
            results.post.append(post)
            results.pushed.append(pushed)
            results.polled.append(polled)
            print(
                f"try {number + 1:>3}/{tries}: push {pushed * 1000:6.0f} ms,"
                f" first polled true {polled * 1000:6.0f} ms (POST {post * 1000:4.0f} ms)",
                flush=True,
            )
        return results
    finally:
        keda.close()
        stream_keda.close()


def _known(keda: KedaClient, model: str) -> bool:
    try:
        keda.ask(model)
    except grpc.RpcError as error:
        if error.code() is grpc.StatusCode.NOT_FOUND:
            return False
        raise
    return True


def poll_only(polled: Sequence[float], every: float, rng: random.Random) -> list[float]:
    """KEDA's polls every `every` s at a random phase: the first after the scaler knows, per try."""
    return [known + rng.uniform(0, every) for known in polled]


# --- the report ---------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), interpolated between the closest ranks."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def report(
    results: Tries, baseline: Sequence[float], polling: float, load: tuple[float, float]
) -> bool:
    from rich.console import Console
    from rich.table import Table

    tries = len(results.pushed)
    table = Table(title=f"Activation: POST generate_inputs/ to `true`, {tries} tries (seconds)")
    for name in ("path", "p50", "p99", "max", "target", "verdict"):
        table.add_column(name, justify="left" if name == "path" else "right")
    ours_p99 = percentile(results.pushed, 99)
    passed = ours_p99 <= TARGET_P99_SECONDS
    rows = (
        ("POST answered (for reference)", results.post, "", ""),
        ("ours: StreamIsActive push (measured)", results.pushed, "p99 <= 1 s",
         "PASS" if passed else "FAIL"),
        ("IsActive first true, polled every 10 ms (measured)", results.polled, "", ""),
        (f"baseline: poll only, every {polling:g} s (computed)", baseline, "", ""),
    )  # fmt: skip
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
    ratio = percentile(baseline, 50) / percentile(results.pushed, 50)
    console.print(
        f"baseline p50 / ours p50: {ratio:.0f}x; scaler refresh every {REFRESH_SECONDS:g} s;"
        f" load average (1 min) {load[0]:.2f} at the start, {load[1]:.2f} at the end"
        f" ({os.cpu_count()} CPUs)",
        soft_wrap=True,
    )
    return passed


def give_up_after(seconds: float) -> None:
    """A hung stack ends the run with an error, its servers stopped on the way out."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"the benchmark did not end within {seconds:g} s")

    signal.signal(signal.SIGALRM, expire)
    signal.alarm(int(seconds))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1, help="seeds the phases, ours and KEDA's")
    parser.add_argument(
        "--polling-seconds",
        type=float,
        default=KEDA_DEFAULT_POLLING_SECONDS,
        help="the baseline's polling interval (KEDA's default: 30)",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: 5 tries")
    parser.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    args = parser.parse_args()
    tries = 5 if args.quick else args.tries
    rng = random.Random(args.seed)
    give_up_after(RUN_DEADLINE_SECONDS)
    loaded = os.getloadavg()[0]
    print(f"starting Redis, the API and the scaler; {tries} tries", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-activation-") as folder:
        root = Path(folder)
        with (
            redis_server(root) as redis_url,
            api_server(
                root / "data", database_url=None, redis_url=redis_url, password=PASSWORD
            ) as api_url,
            scaler_process(root, f"{api_url}/metrics") as scaler,
        ):
            client = APIClient(api_url=api_url, username="admin", password=PASSWORD)
            results = measure(client, scaler, tries, rng)
    baseline = poll_only(results.polled, args.polling_seconds, rng)
    passed = report(results, baseline, args.polling_seconds, (loaded, os.getloadavg()[0]))
    return 1 if args.check and not passed else 0


if __name__ == "__main__":
    sys.exit(main())
