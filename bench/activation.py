"""Benchmark: from `POST generate_inputs/` to the `true` on a held-open StreamIsActive.

Everything runs for real on 127.0.0.1: a private Redis, the API (`oasis-autoscaler api`, SQLite)
and the scaler (`oasis-autoscaler scaler`, its default settings: it scrapes the API's /metrics
every 0.5 s). The real `oasislmf` client registers one model (FIXED_WORKERS, one worker), a
portfolio with a location file and an analysis. No worker runs: a queued analysis is work enough
for the model to wake. A KEDA-shaped client (`cli.keda.client.KedaClient`) holds one
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
cli/keda/timing.py: `--polling-seconds 15` gives that baseline.)

    .venv/bin/python bench/activation.py [--tries 50] [--seed 1] [--polling-seconds 30] [--quick]
        [--check]

With `--check` the script exits 1 when the target (p99 of ours <= 1 s) is missed.
"""

from __future__ import annotations

import queue
import random
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # bench.live is not an installed package

from oasislmf.platform_api.client import APIClient  # type: ignore[import-untyped]  # noqa: E402

from bench import live  # noqa: E402
from cli.keda.client import KedaClient  # noqa: E402
from cli.local.launch import wait_until  # noqa: E402
from scaler.sources import text_samples  # noqa: E402

# KEDA's default pollingInterval (a ScaledObject that sets none); ours sets its own.
KEDA_DEFAULT_POLLING_SECONDS = 30.0
TRY_DEADLINE_SECONDS = 10.0


@dataclass
class Tries:
    """Per try, seconds from just before the POST was sent."""

    post: list[float] = field(default_factory=list)
    pushed: list[float] = field(default_factory=list)
    polled: list[float] = field(default_factory=list)


# --- the stack ----------------------------------------------------------------------------------


def open_streams(scaler: live.Scaler) -> float:
    """The scaler's own count of open StreamIsActive calls."""
    text = requests.get(scaler.metrics_url, timeout=5).text
    return sum(s.value for s in text_samples(text) if s.name == "oasis_scaler_open_streams")


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
    polled = live.poll_until(active, "IsActive after the POST", TRY_DEADLINE_SECONDS)
    pushed = follower.pushes.get(timeout=TRY_DEADLINE_SECONDS)
    client.analyses.cancel(analysis).raise_for_status()
    live.poll_until(lambda: not active(), "IsActive after the cancel", TRY_DEADLINE_SECONDS)
    return posted - began, pushed - began, polled - began


def measure(client: APIClient, scaler: live.Scaler, tries: int, rng: random.Random) -> Tries:
    registered = live.new_analysis(client, "Act")
    analysis, model = registered.analysis, registered.queue
    keda, stream_keda = KedaClient(scaler.address), KedaClient(scaler.address)
    try:
        # The scaler knows the model at its next read of the API's metrics.
        wait_until(
            lambda: live.asked(keda, model) is not None, f"the scaler to know {model}", deadline=10
        )
        follower = Follower(stream_keda, model)
        wait_until(lambda: open_streams(scaler) >= 1, "the StreamIsActive to open", deadline=10)
        results = Tries()
        for number in range(tries):
            time.sleep(rng.uniform(0, live.REFRESH_SECONDS))  # a random phase of the refresh cycle
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


def poll_only(polled: Sequence[float], every: float, rng: random.Random) -> list[float]:
    """KEDA's polls every `every` s at a random phase: the first after the scaler knows, per try."""
    return [known + rng.uniform(0, every) for known in polled]


# --- the report ---------------------------------------------------------------------------------


def report(
    results: Tries, baseline: Sequence[float], polling: float, load: live.LoadAverage
) -> bool:
    return live.latency_report(
        f"Activation: POST generate_inputs/ to `true`, {len(results.pushed)} tries (seconds)",
        results.post,
        ("ours: StreamIsActive push (measured)", results.pushed),
        (f"baseline: poll only, every {polling:g} s (computed)", baseline),
        load,
        measured=[("IsActive first true, polled every 10 ms (measured)", results.polled)],
    )


def main() -> int:
    parser = live.arguments(__doc__)
    parser.add_argument("--tries", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1, help="seeds the phases, ours and KEDA's")
    parser.add_argument(
        "--polling-seconds",
        type=float,
        default=KEDA_DEFAULT_POLLING_SECONDS,
        help="the baseline's polling interval (KEDA's default: 30)",
    )
    live.add_run_flags(parser, quick="a smoke run: 5 tries")
    args = parser.parse_args()
    tries = 5 if args.quick else args.tries
    rng = random.Random(args.seed)
    load = live.bounded_run()
    print(f"starting Redis, the API and the scaler; {tries} tries", flush=True)
    with live.api_stack("bench-activation-") as stack:
        results = measure(stack.client, stack.scaler, tries, rng)
    baseline = poll_only(results.polled, args.polling_seconds, rng)
    passed = report(results, baseline, args.polling_seconds, load)
    return 1 if args.check and not passed else 0


if __name__ == "__main__":
    sys.exit(main())
