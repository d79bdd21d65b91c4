"""Benchmark: GetMetrics latency of the scaler with 1,000 models, at 500 calls/s and beyond.

The scaler runs for real, as deployed: `oasis-autoscaler scaler` in its own process with its
default settings (a read of its source every 0.5 s, 256 gRPC threads). Its source is a static
/metrics text for 1,000 models, served by a small HTTP server in this process
(`tests.support.published`, the publisher the scaler's tests use): every gauge of docs/metrics.md
the scaler reads, the three strategies and a spread of work. That is what the API's /metrics says
with 1,000 models registered, without 1,000 models' worth of API and database work on the machine
while it measures, so the figures are the scaler's: its gRPC answers while its reader process
scrapes and parses every half second and the server applies what changed. `--churn` (100) models
change their work between two reads (a ring of texts served in turn), so every read has work to
do, as at full activity; `--churn 0` serves one static text.

The load is KEDA's: GetMetrics with the trigger's metadata (`model: <queue>`) and the metricName
its GetMetricSpec gave (asked once per model first, as KEDA caches it), for models drawn at random.
`--processes` client processes (4) share the rate; each runs an open-loop schedule with asyncio
and grpc.aio: call k of a process is sent at its planned time whether or not the earlier ones
have been answered, so a slow answer never lowers the offered rate. Latency is measured from the
planned send time to the answer (coordinated-omission aware: a call the client could only send
late counts its wait); the p99 from the actual send is shown too. The achieved rate is the
successful answers over the time from the first planned send to the last answer.

1. The baseline, first, before the scaler starts (its refreshes would take CPU from the floor on
   a small machine): a trivial ExternalScaler servicer in its own process (the same kind of gRPC
   server, thread pool and messages; a constant answer, no state, no refresh, no interceptor),
   the floor of gRPC Python and of these clients on this machine. `--duration` (20 s) at
   `--rate` (500 calls/s), then the highest rate it sustains: the offered rate doubles (each step
   `--step-duration`, 8 s) until p99 > 5 ms or the achieved rate is under 95 % of the offered
   one, or `--max-rate` (16,000) would be passed.
2. The same against the scaler. The difference is what the scaler itself adds.

    .venv/bin/python bench/getmetrics.py [--models 1000] [--rate 500] [--duration 20]
        [--processes 4] [--step-duration 8] [--max-rate 16000] [--quick] [--check]

With `--check` the script exits 1 when the target (p99 <= 5 ms at 500 calls/s) is missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.context import SpawnContext
from multiprocessing.pool import Pool
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import grpc
import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # bench.live and the tests' publisher are not installed

from bench import live  # noqa: E402
from cli.keda.client import KedaClient  # noqa: E402
from cli.local.launch import free_port, wait_until  # noqa: E402
from protos import externalscaler_pb2 as pb  # noqa: E402
from protos import externalscaler_pb2_grpc as pb_grpc  # noqa: E402
from scaler.samples import build_states  # noqa: E402
from scaler.servicer import metric_name  # noqa: E402
from scaler.sources import LineCache, text_samples  # noqa: E402
from scaler.state import with_grants  # noqa: E402
from tests.support.published import Publisher, published_text, publisher  # noqa: E402

TARGET_P99_MS = 5.0
SUSTAINED_SHARE = 0.95
CALL_TIMEOUT_SECONDS = 3.0
# Clients connect and warm up before the shared start; one that is not ready by then says so.
START_MARGIN_SECONDS = 1.0
WARM_CALLS = 20
WARM_SECONDS = 0.5
# The scaler reads its source every 0.5 s: a new text each time, from a ring of this many.
CHURN_PERIOD_SECONDS = 0.5
CHURN_TEXTS = 8
SCALER, BASELINE = "scaler", "baseline: constant servicer"
STRATEGIES = ("FIXED_WORKERS", "QUEUE_LOAD", "DYNAMIC_TASKS")


@dataclass(frozen=True)
class Plan:
    """One client process's share of a run."""

    address: str
    calls: Sequence[tuple[str, str]]  # (model, metricName) to draw from
    rate: float  # this process's calls per second
    count: int
    start: float  # time.monotonic() of the run's first call (shared: CLOCK_MONOTONIC)
    offset: float  # so that the processes' calls interleave
    seed: int


@dataclass(frozen=True)
class Timed:
    planned: float
    sent: float
    done: float
    ok: bool


@dataclass(frozen=True)
class Level:
    """One run: a target at an offered rate."""

    target: str
    offered: float
    from_planned_ms: list[float]
    from_sent_ms: list[float]
    achieved: float
    errors: int
    late_starts: int

    def percentile(self, q: float) -> float:
        return live.percentile(self.from_planned_ms, q)

    @property
    def sustained(self) -> bool:
        return (
            self.percentile(99) <= TARGET_P99_MS and self.achieved >= SUSTAINED_SHARE * self.offered
        )


# --- the servers --------------------------------------------------------------------------------


def published_models(count: int) -> dict[str, dict[str, Any]]:
    """`count` models with each strategy and a spread of work, as the API would publish them."""
    models: dict[str, dict[str, Any]] = {}
    for n in range(count):
        models[f"Bench-M{n:04d}-1"] = {
            "scaling_strategy": STRATEGIES[n % len(STRATEGIES)],
            "worker_count_fixed": 1 + n % 4,
            "worker_count_max": 5 + n % 10,
            "worker_count_min": n % 2,
            "chunks_per_worker": 1 + n % 8,
            "analyses": n % 5,
            "pending": (n * 7) % 60,
        }
    return models


class ConstantServicer(pb_grpc.ExternalScalerServicer):
    """The floor: the same messages, answered with a constant and nothing else."""

    def GetMetricSpec(
        self, request: pb.ScaledObjectRef, context: grpc.ServicerContext
    ) -> pb.GetMetricSpecResponse:
        spec = pb.MetricSpec(metricName="constant", targetSize=1, targetSizeFloat=1.0)
        return pb.GetMetricSpecResponse(metricSpecs=[spec])

    def IsActive(
        self, request: pb.ScaledObjectRef, context: grpc.ServicerContext
    ) -> pb.IsActiveResponse:
        return pb.IsActiveResponse(result=True)

    def GetMetrics(
        self, request: pb.GetMetricsRequest, context: grpc.ServicerContext
    ) -> pb.GetMetricsResponse:
        value = pb.MetricValue(metricName=request.metricName, metricValue=1, metricValueFloat=1.0)
        return pb.GetMetricsResponse(metricValues=[value])


def serve_constant(port: int, stopping: Event) -> None:
    """The baseline's server process: the scaler's kind of server (sync, 256 threads)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=256))
    pb_grpc.add_ExternalScalerServicer_to_server(ConstantServicer(), server)  # type: ignore[no-untyped-call]
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    stopping.wait()
    server.stop(0).wait()


@contextmanager
def constant_server(context: SpawnContext) -> Iterator[str]:
    port = free_port()
    stopping = context.Event()
    process = context.Process(target=serve_constant, args=(port, stopping), daemon=True)
    process.start()
    address = f"127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(address), "the constant servicer", deadline=30)
        yield address
    finally:
        stopping.set()
        process.join(10)
        if process.is_alive():
            process.kill()  # by its PID: it is our child
            process.join()


def _answers(address: str) -> bool:
    keda = KedaClient(address)
    try:
        keda.ask("any", timeout=1)
        return True
    except grpc.RpcError:
        return False
    finally:
        keda.close()


def rpc_seconds(metrics_url: str) -> tuple[float, float]:
    """The scaler's own count and summed time of GetMetrics answers (its interceptor's)."""
    text = requests.get(metrics_url, timeout=5).text
    count = total = 0.0
    for sample in text_samples(text):
        if sample.labels.get("method") != "GetMetrics":
            continue
        if sample.name == "oasis_scaler_rpc_duration_seconds_count":
            count = sample.value
        elif sample.name == "oasis_scaler_rpc_duration_seconds_sum":
            total = sample.value
    return count, total


# --- the clients (each in its own process) ------------------------------------------------------


def run_client(plan: Plan) -> tuple[list[Timed], bool]:
    """This process's calls of the run, and whether it was ready before the start."""
    return asyncio.run(_client(plan))


async def _client(plan: Plan) -> tuple[list[Timed], bool]:
    rng = random.Random(plan.seed)
    calls = [
        pb.GetMetricsRequest(scaledObjectRef=KedaClient.ref(model), metricName=name)
        for model, name in plan.calls
    ]
    async with grpc.aio.insecure_channel(plan.address) as channel:
        stub = pb_grpc.ExternalScalerStub(channel)  # type: ignore[no-untyped-call]
        for _ in range(WARM_CALLS):  # the connection, and grpc's first-call costs
            await stub.GetMetrics(rng.choice(calls), timeout=CALL_TIMEOUT_SECONDS)
        ready = time.monotonic() < plan.start
        pending = []
        for number in range(plan.count):
            planned = plan.start + plan.offset + number / plan.rate
            wait = planned - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            pending.append(asyncio.create_task(_call(stub, rng.choice(calls), planned)))
        return list(await asyncio.gather(*pending)), ready


async def _call(stub: Any, request: pb.GetMetricsRequest, planned: float) -> Timed:
    sent = time.monotonic()
    try:
        await stub.GetMetrics(request, timeout=CALL_TIMEOUT_SECONDS)
        ok = True
    except grpc.aio.AioRpcError:
        ok = False
    return Timed(planned, sent, time.monotonic(), ok)


def run_level(
    pool: Pool,
    processes: int,
    target: str,
    address: str,
    calls: Sequence[tuple[str, str]],
    rate: float,
    seconds: float,
    seed: int,
) -> Level:
    start = time.monotonic() + START_MARGIN_SECONDS
    share = rate / processes
    plans = [
        Plan(
            address=address,
            calls=calls,
            rate=share,
            count=max(1, round(share * seconds)),
            start=start,
            offset=n / rate,
            seed=seed * 1000 + n,
        )
        for n in range(processes)
    ]
    answers = pool.map(run_client, plans)
    timed = [call for calls_of_one, _ in answers for call in calls_of_one]
    good = [call for call in timed if call.ok]
    span = max((call.done for call in good), default=start + seconds) - start
    return Level(
        target=target,
        offered=rate,
        from_planned_ms=[(call.done - call.planned) * 1000 for call in good] or [float("inf")],
        from_sent_ms=[(call.done - call.sent) * 1000 for call in good] or [float("inf")],
        achieved=len(good) / span if span > 0 else 0.0,
        errors=len(timed) - len(good),
        late_starts=sum(1 for _, ready in answers if not ready),
    )


# --- the report ---------------------------------------------------------------------------------


def describe(level: Level) -> str:
    late = f", {level.late_starts} client(s) started late" if level.late_starts else ""
    return (
        f"{level.target} at {level.offered:,.0f}/s: p50 {level.percentile(50):.2f} ms,"
        f" p99 {level.percentile(99):.2f} ms, achieved {level.achieved:,.0f}/s,"
        f" {level.errors} errors{late}"
    )


def table_of(title: str, levels: Sequence[Level]) -> Any:
    from rich.table import Table

    table = Table(title=title)
    for name in ("server", "offered/s", "achieved/s", "p50 ms", "p99 ms", "max ms",
                 "p99 from send ms", "errors", "sustained"):  # fmt: skip
        table.add_column(name, justify="left" if name == "server" else "right")
    for level in levels:
        table.add_row(
            level.target,
            f"{level.offered:,.0f}",
            f"{level.achieved:,.0f}",
            f"{level.percentile(50):.2f}",
            f"{level.percentile(99):.2f}",
            f"{max(level.from_planned_ms):.2f}",
            f"{live.percentile(level.from_sent_ms, 99):.2f}",
            str(level.errors),
            "yes" if level.sustained else "no",
        )
    return table


def highest(levels: Sequence[Level], target: str) -> str:
    """The highest offered rate `target` sustained, every lower step sustained too."""
    best = None
    for level in sorted((lv for lv in levels if lv.target == target), key=lambda lv: lv.offered):
        if not level.sustained:
            break
        best = level.offered
    return f"{best:,.0f} calls/s" if best is not None else "none of the steps"


# --- the run ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    models: int
    rate: float
    duration: float
    processes: int
    step_duration: float
    max_rate: float
    seed: int
    churn: int


def churned_texts(models: dict[str, dict[str, Any]], churn: int, seed: int) -> list[str]:
    """CHURN_TEXTS texts of `models`, each with the work of `churn` models changed from the one
    before it: served in turn, every read of the scaler finds that many models changed."""
    rng = random.Random(seed)
    names = sorted(models)
    current = {name: dict(values) for name, values in models.items()}
    texts = []
    for _ in range(CHURN_TEXTS):
        for name in rng.sample(names, min(churn, len(names))):
            current[name]["pending"] = (current[name]["pending"] + rng.randint(1, 9)) % 80
        texts.append(published_text(current))
    return texts


@contextmanager
def churning(published: Publisher, texts: list[str]) -> Iterator[None]:
    """Serve `texts` in turn, a new one every scaler read (0.5 s), until the block ends."""
    stop = threading.Event()

    def turn() -> None:
        for text in itertools.cycle(texts):
            published.text = text
            if stop.wait(CHURN_PERIOD_SECONDS):
                return

    thread = threading.Thread(target=turn, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def climb(
    pool: Pool, options: Options, target: str, address: str, calls: Sequence[tuple[str, str]]
) -> list[Level]:
    """Double the rate from the measured one while `target` keeps up."""
    levels: list[Level] = []
    rate = options.rate * 2
    while rate <= options.max_rate:
        level = run_level(pool, options.processes, target, address, calls, rate,
                          options.step_duration, options.seed)  # fmt: skip
        print(describe(level), flush=True)
        levels.append(level)
        if not level.sustained:
            break
        rate *= 2
    return levels


def warm(pool: Pool, options: Options, address: str, calls: Sequence[tuple[str, str]]) -> None:
    """An unmeasured short run: every client process started, the server's first calls made."""
    run_level(pool, options.processes, "warm-up", address, calls, options.rate, WARM_SECONDS, 0)


def refresh_ms(texts: Sequence[str], repeat: int = 5) -> float:
    """The median CPU time of the scaler's work on one read (parse what changed, states,
    grants), each read the next of `texts` after the one before it, measured here: the scaler
    does it every refresh in which something changed, in its reader process (scaler/reader.py)."""
    lines = LineCache()
    times = []
    for text in itertools.islice(itertools.cycle(texts), repeat + 1):
        began = time.process_time()
        with_grants(build_states(lines.samples(text)).states, None)
        times.append((time.process_time() - began) * 1000)
    return statistics.median(times[1:])  # the first read parses every line


@dataclass(frozen=True)
class Results:
    main: list[Level]  # the scaler, then the baseline, at --rate
    ramp: list[Level]
    handler_ms: float | None  # the scaler's own mean time per GetMetrics, from its interceptor
    refresh_ms: float  # the CPU time of one of the scaler's refreshes, measured here


def measure(options: Options, root: Path) -> Results:
    context = multiprocessing.get_context("spawn")  # grpc does not survive a fork
    models = published_models(options.models)
    with (
        publisher(models) as published,
        constant_server(context) as constant,
        context.Pool(options.processes) as pool,
    ):
        # The floor first, before the scaler starts: its refreshes would take CPU from it.
        floor_calls = [(model, metric_name(model)) for model in models]
        warm(pool, options, constant, floor_calls)
        floor = run_level(pool, options.processes, BASELINE, constant, floor_calls,
                          options.rate, options.duration, options.seed)  # fmt: skip
        print(describe(floor), flush=True)
        floor_ramp = climb(pool, options, BASELINE, constant, floor_calls)
        texts = churned_texts(models, options.churn, options.seed) if options.churn else []
        with (
            live.scaler_process(root, published.url) as scaler,
            churning(published, texts) if texts else contextlib.nullcontext(),
        ):
            address = scaler.address
            calls = list(zip(models, metric_names(address, list(models)), strict=True))
            warm(pool, options, address, calls)
            before = rpc_seconds(scaler.metrics_url)
            ours = run_level(pool, options.processes, SCALER, address, calls, options.rate,
                             options.duration, options.seed)  # fmt: skip
            after = rpc_seconds(scaler.metrics_url)
            print(describe(ours), flush=True)
            ours_ramp = climb(pool, options, SCALER, address, calls)
        served = after[0] - before[0]
        return Results(
            main=[ours, floor],
            ramp=[*ours_ramp, *floor_ramp],
            handler_ms=(after[1] - before[1]) / served * 1000 if served else None,
            refresh_ms=refresh_ms(texts or [published.text]),
        )


def metric_names(address: str, models: Sequence[str]) -> list[str]:
    """Each model's metric name: KEDA asks it once per trigger, then sends it with GetMetrics."""
    keda = KedaClient(address)
    try:
        return [keda.stub.GetMetricSpec(keda.ref(m)).metricSpecs[0].metricName for m in models]
    finally:
        keda.close()


def report(options: Options, results: Results, load: live.LoadAverage) -> bool:
    from rich.console import Console

    console = Console(width=130)
    console.print(
        table_of(
            f"GetMetrics, {options.models:,} models, {options.processes} client processes,"
            f" {options.duration:g} s at {options.rate:,.0f} calls/s; latency from the planned"
            " send time",
            results.main,
        )
    )
    if results.ramp:
        console.print(table_of(f"Ramp: {options.step_duration:g} s per step", results.ramp))
    scaler, floor = results.main
    passed = scaler.percentile(99) <= TARGET_P99_MS and scaler.sustained
    levels = [*results.main, *results.ramp]
    handler = f"{results.handler_ms:.3f} ms" if results.handler_ms is not None else "unknown"
    lines = (
        f"target: p99 <= {TARGET_P99_MS:g} ms at {options.rate:,.0f} calls/s:"
        f" {'PASS' if passed else 'FAIL'} (scaler p99 {scaler.percentile(99):.2f} ms,"
        f" baseline p99 {floor.percentile(99):.2f} ms)",
        f"highest rate sustained (p99 <= {TARGET_P99_MS:g} ms, achieved >= 95 %):"
        f" scaler {highest(levels, SCALER)}, baseline {highest(levels, BASELINE)}"
        f" (doubling up to {options.max_rate:,.0f})",
        f"the scaler's own mean time per GetMetrics (its interceptor's timing): {handler};"
        f" one refresh of {options.models:,} models with {options.churn:,} changed (parse what"
        f" changed, states, grants) takes"
        f" {results.refresh_ms:.0f} ms of CPU every 0.5 s, in the scaler's reader process",
        load.summary("; the clients share them with the servers"),
    )
    for line in lines:
        console.print(line, soft_wrap=True)
    return passed


def main() -> int:
    parser = live.arguments(__doc__)
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=500.0, help="calls/s, all clients")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds at --rate")
    parser.add_argument("--processes", type=int, default=4, help="client processes")
    parser.add_argument("--step-duration", type=float, default=8.0, help="seconds per step")
    parser.add_argument("--max-rate", type=float, default=16000.0, help="the ramp's last step")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--churn",
        type=int,
        default=100,
        help="models whose work changes between two reads of the scaler (0: a static text)",
    )
    live.add_run_flags(parser, quick="a smoke run: 2 s, then 1 s at twice the rate")
    args = parser.parse_args()
    options = Options(
        models=args.models,
        rate=args.rate,
        duration=2.0 if args.quick else args.duration,
        processes=args.processes,
        step_duration=1.0 if args.quick else args.step_duration,
        max_rate=args.rate * 2 if args.quick else args.max_rate,
        seed=args.seed,
        churn=args.churn,
    )
    load = live.bounded_run()
    print(
        f"serving {options.models:,} models' metrics ({options.churn:,} of them changing between"
        f" two reads); starting the scaler, the constant"
        f" servicer and {options.processes} client processes",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-getmetrics-") as folder:
        results = measure(options, Path(folder))
    passed = report(options, results, load)
    return 1 if args.check and not passed else 0


if __name__ == "__main__":
    sys.exit(main())
