"""Benchmark: the demo model's 1,447 events on 2,000 locations, in 1 chunk and in 8, on 2 workers.

Everything runs for real, as in production: a private Redis, the API (`oasis-autoscaler api`,
SQLite) and two worker processes (`oasis-autoscaler worker --queue Q --concurrency 1`, twice:
two workers as KEDA scales them, each a pod with one slot, so each takes one sub-task at a
time). The real `oasislmf` client drives each analysis (`run_generate`, then `run_analysis`),
and the sub-task times from `sub_task_list/` split its wall time into:

- chunks: the time some chunk sub-task (lookup or loss) was running (and the sum of their run
  times, which exceeds it when the two workers run chunks side by side);
- split: `prepare-input-generation-params`, where the location file is cut into chunks;
- join: `collect-keys` and `generate-losses-output`, where the chunks' results are put together;
- other serial steps: writing the input files, preparing the run folder, recording, cleaning up;
- gaps: the time no sub-task was running (main tasks splitting a stage, Celery handing the next
  sub-task over, the client noticing a stage is done).

The overhead of chunking is split + join + gaps, as a share of the wall time. The baseline is
the 1-chunk run, measured in the same run: each configuration runs `--repeat` times, in turns,
and the fastest run of each is shown whole (other work on the machine only ever slows a run);
the target (8 chunks at most 1.25x the time of 1) is judged on the medians of the wall times,
and the script exits 1 when it is missed.
numba is warmed first by a small analysis (10 locations, 2 chunks per stage), in a cache shared
with the kernel tests, so no measured run compiles the kernel.

    .venv/bin/python bench/chunked_run.py [--locations 2000] [--chunks 8] [--repeat 5]
"""

from __future__ import annotations

import argparse
import io
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, redirect_stderr
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from oasislmf.platform_api.client import APIClient  # type: ignore[import-untyped]

from cli.local.launch import api_server, redis_server, worker_server
from worker.demo_model import (
    EVENTS,
    demo_analysis_settings,
    demo_locations,
    model_settings,
)
from worker.settings import WorkerSettings

REPO = Path(__file__).resolve().parents[1]

PASSWORD = "bench-password"
WORKERS = 2
POLL_SECONDS = 0.2
DEADLINE_SECONDS = 900
TARGET_CHUNKS, TARGET_RATIO = 8, 1.25  # the median run in 8 chunks against 1, at most
WARM_LOCATIONS, WARM_CHUNKS = 10, 2
NUMBA_CACHE = WorkerSettings().effective_numba_cache_dir
SPLIT = {"prepare-input-generation-params"}
JOIN = {"collect-keys", "generate-losses-output"}


@dataclass(frozen=True)
class Interval:
    slug: str
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Breakdown:
    """Where one analysis's wall time went (seconds)."""

    chunks: int
    wall: float
    chunk_span: float
    chunk_sum: float
    lookup_span: float
    loss_span: float
    split: float
    join: float
    other_serial: float
    gaps: float

    @property
    def overhead(self) -> float:
        return self.split + self.join + self.gaps

    @property
    def share(self) -> float:
        return self.overhead / self.wall


# --- timing a run -----------------------------------------------------------------------------


def _epoch(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def intervals(sub_tasks: Sequence[dict[str, Any]]) -> list[Interval]:
    """Each completed sub-task's run, from its start to its end."""
    done = [t for t in sub_tasks if t["status"] == "COMPLETED"]
    if len(done) != len(sub_tasks):
        raise RuntimeError(f"not every sub-task completed: {[t['status'] for t in sub_tasks]}")
    return [Interval(t["slug"], _epoch(t["start_time"]), _epoch(t["end_time"])) for t in done]


def covered(spans: Sequence[Interval]) -> float:
    """The time at least one of `spans` was running (their union's length)."""
    total, reach = 0.0, float("-inf")
    for span in sorted(spans, key=lambda s: s.start):
        if span.end > reach:
            total += span.end - max(span.start, reach)
            reach = span.end
    return total


def _base(slug: str) -> str:
    head, _, tail = slug.rpartition("-")
    return head if tail.isdigit() else slug


def breakdown(chunks: int, wall: float, runs: Sequence[Interval]) -> Breakdown:
    chunk_runs = [r for r in runs if r.slug != _base(r.slug)]
    lookups = [r for r in chunk_runs if _base(r.slug) == "prepare-keys-file"]
    serial = [r for r in runs if r.slug == _base(r.slug)]
    split = sum(r.seconds for r in serial if r.slug in SPLIT)
    join = sum(r.seconds for r in serial if r.slug in JOIN)
    return Breakdown(
        chunks=chunks,
        wall=wall,
        chunk_span=covered(chunk_runs),
        chunk_sum=sum(r.seconds for r in chunk_runs),
        lookup_span=covered(lookups),
        loss_span=covered([r for r in chunk_runs if r not in lookups]),
        split=split,
        join=join,
        other_serial=sum(r.seconds for r in serial) - split - join,
        gaps=wall - covered(runs),
    )


# --- driving the stack ------------------------------------------------------------------------


@contextmanager
def stack(root: Path, numba_cache: Path) -> Iterator[tuple[APIClient, str]]:
    """Redis, the API, a model and its workers (logs in `root`); yields the client and model."""
    with (
        redis_server(root) as redis_url,
        api_server(
            root / "data", database_url=None, redis_url=redis_url, password=PASSWORD
        ) as api_url,
        ExitStack() as workers,
    ):
        client = APIClient(api_url=api_url, username="admin", password=PASSWORD)
        model = client.models.create("OasisLMF", "PiWind", "1").json()
        client.models.settings.post(model["id"], model_settings())
        logs = [root / f"worker-{n}.log" for n in range(1, WORKERS + 1)]
        for log in logs:
            workers.enter_context(
                worker_server(
                    root / "data",
                    redis_url=redis_url,
                    queue=model["queue_name"],
                    numba_cache_dir=numba_cache,
                    concurrency=1,
                    log_path=log,
                )
            )
        yield client, str(model["id"])


def chunking(chunks: int) -> dict[str, Any]:
    return {
        "lookup_strategy": "FIXED_CHUNKS",
        "fixed_lookup_chunks": chunks,
        "loss_strategy": "FIXED_CHUNKS",
        "fixed_analysis_chunks": chunks,
    }


def new_analysis(client: APIClient, model: str, locations: int, chunks: int) -> int:
    name = uuid.uuid4().hex[:8]
    portfolio = client.portfolios.create(f"bench-{name}").json()["id"]
    client.portfolios.location_file.post(
        portfolio, demo_locations(locations).encode(), content_type="text/csv"
    )
    analysis = int(client.analyses.create(f"bench-{name}", portfolio, int(model)).json()["id"])
    client.analyses.settings.post(analysis, demo_analysis_settings())
    client.analyses.chunking_configuration.post(analysis, chunking(chunks))
    return analysis


def run(client: APIClient, model: str, locations: int, chunks: int) -> Breakdown:
    """Generate the inputs and run the losses of a new analysis; where its wall time went."""
    analysis = new_analysis(client, model, locations, chunks)
    start = time.time()
    with redirect_stderr(io.StringIO()):  # the client's progress bars
        generated = client.run_generate(analysis, poll_interval=POLL_SECONDS)
        ran = generated and client.run_analysis(analysis, poll_interval=POLL_SECONDS)
    wall = time.time() - start
    details = client.analyses.get(analysis).json()
    if not ran:
        raise RuntimeError(f"analysis {analysis} ended {details['status']}")
    if (details["lookup_chunks"], details["analysis_chunks"]) != (chunks, chunks):
        raise RuntimeError(f"analysis {analysis} was not cut into {chunks} chunks: {details}")
    return breakdown(chunks, wall, intervals(client.analyses.sub_task_list(analysis).json()))


# --- the report -------------------------------------------------------------------------------

ROWS = (
    ("wall time", "wall"),
    ("chunk sub-tasks running (union)", "chunk_span"),
    ("  lookup chunks (union)", "lookup_span"),
    ("  loss chunks (union)", "loss_span"),
    ("  sum of chunk run times", "chunk_sum"),
    ("split (prepare-input-generation-params)", "split"),
    ("join (collect-keys, generate-losses-output)", "join"),
    ("other serial steps", "other_serial"),
    ("gaps (queueing, main tasks, polling)", "gaps"),
    ("overhead = split + join + gaps", "overhead"),
)


def report(console: Any, base: Breakdown, chunked: Breakdown) -> None:
    from rich.table import Table

    many = f"{chunked.chunks} chunks"
    table = Table(title=f"{EVENTS:,} events: seconds, 1 chunk (baseline) against {many}")
    table.add_column("")
    for name in ("1 chunk (baseline)", many, f"{chunked.chunks} / 1"):
        table.add_column(name, justify="right")
    for label, field in ROWS:
        one, other = getattr(base, field), getattr(chunked, field)
        ratio = f"{other / one:.2f}" if one >= 0.01 else "-"
        table.add_row(label, f"{one:.2f}", f"{other:.2f}", ratio)
    table.add_row(
        "overhead share of the wall time", f"{base.share:.0%}", f"{chunked.share:.0%}", ""
    )
    console.print(table)
    console.print(f"{many} took {chunked.wall - base.wall:+.1f} s against 1:")
    console.print(
        f"  chunk sub-tasks {chunked.chunk_span - base.chunk_span:+.1f} s,"
        f" split + join + gaps {chunked.overhead - base.overhead:+.1f} s,"
        f" other serial steps {chunked.other_serial - base.other_serial:+.1f} s"
    )


def measure(
    console: Any, client: APIClient, model: str, locations: int, chunks: int, repeat: int
) -> dict[int, list[Breakdown]]:
    """The warming run, then each configuration `repeat` times, in turns: the runs by chunks."""
    with console.status(f"warming numba: {WARM_LOCATIONS} locations, {WARM_CHUNKS} chunks"):
        started = time.time()
        run(client, model, WARM_LOCATIONS, WARM_CHUNKS)
    console.print(f"numba warmed first by a small run ({time.time() - started:.0f} s)")
    runs: dict[int, list[Breakdown]] = {1: [], chunks: []}
    for turn in range(repeat):
        for count in (1, chunks) if turn % 2 == 0 else (chunks, 1):
            with console.status(f"run {turn + 1} of {repeat}: {count} chunk(s)"):
                measured = run(client, model, locations, count)
            console.print(f"run {turn + 1}, {count} chunk(s): {measured.wall:.1f} s")
            runs[count].append(measured)
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--locations", type=int, default=2000)
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--numba-cache", type=Path, default=NUMBA_CACHE)
    args = parser.parse_args()
    from rich.console import Console

    console = Console(width=100)
    signal.alarm(DEADLINE_SECONDS)  # a hung stack ends the benchmark instead of waiting forever
    args.numba_cache.mkdir(parents=True, exist_ok=True)
    console.print(f"starting Redis, the API and {WORKERS} workers (--concurrency 1 each)")
    with (
        tempfile.TemporaryDirectory(prefix="bench-run-") as folder,
        stack(Path(folder), args.numba_cache.absolute()) as (client, model),
    ):
        runs = measure(console, client, model, args.locations, args.chunks, args.repeat)
    console.print(
        f"{args.locations:,} locations, {WORKERS} workers x concurrency 1;"
        f" the fastest of {args.repeat} runs of each"
    )
    base, chunked = (min(runs[count], key=lambda r: r.wall) for count in (1, args.chunks))
    report(console, base, chunked)
    medians = [statistics.median(r.wall for r in runs[count]) for count in (1, args.chunks)]
    ratio = medians[1] / medians[0]
    judged = args.chunks == TARGET_CHUNKS
    verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
    target = f"; target <= {TARGET_RATIO}x: {verdict}" if judged else ""
    console.print(
        f"median of {args.repeat}: 1 chunk {medians[0]:.2f} s, {args.chunks} chunks"
        f" {medians[1]:.2f} s ({ratio:.2f}x{target})"
    )
    return 1 if judged and verdict == "FAIL" else 0


if __name__ == "__main__":
    sys.exit(main())
