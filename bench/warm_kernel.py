"""Benchmark: the warm kernel against the cold one (the baseline), both measured in this run.

Everything is the real Oasis kernel through the worker's own kernel steps (`worker.kernel`), the
demo model's ground-up ORD outputs (ELT, PLT, ALT, EPT), numba's cache warm (this CPU's folder,
built first if needed, shared with the tests):

1. Fixed cost per loss chunk: chunk 1 of 8 of a tiny analysis (10 locations), end to end
   (`losses_chunk`: folder, script, tools, publishing), the median of `--repeat` runs; and the
   output stage (`losses_output`) of that analysis.
2. A loss stage in N chunks against one chunk, on 2 workers: each worker a process of its own
   (with its own warm process, started and warm before the clock starts, as a pool process's is
   before its first task, and oasislmf's Python side imported, as a pool process has it after
   its first task: 1.4 s of CPU once, which until 2026-12-06 was timed in every stage) taking
   every other chunk; one chunk runs the whole event set in 2 kernel pipelines (every core), as
   a worker runs an unsplit stage; then the output stage.
   Each stage is timed `--stage-repeat` times (the median) from the start signal to the end
   each worker reports, with nothing else reading the workers; the peak memory of a worker
   (its proportional set size with every process it started, the warm process and the tools
   included) is sampled every 0.25 s in a run of its own, because reading a process's memory
   map holds its fork (the warm process forks every tool run) and would slow what is timed.
   - 1,447 events x 2,000 locations: 8 chunks against 1;
   - 20,000 events x 2,000 locations (the demo model's data made with 20,000 events): 4 against 1.

Input generation is not timed. Other work on the machine only ever slows a run: compare the
columns of one run, not runs.

    .venv/bin/python bench/warm_kernel.py [--repeat 5] [--locations 2000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]  # oasislmf's dependency

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from worker import demo_model, kernel, numba_cache  # noqa: E402
from worker.settings import WorkerSettings  # noqa: E402
from worker.warm_kernel import WarmKernel  # noqa: E402

NUMBA_CACHE = WorkerSettings().effective_numba_cache_dir
WORKERS = 2
SAMPLE_SECONDS = 0.25
TINY_LOCATIONS, TINY_CHUNKS = 10, 8
BIG_EVENTS = 20_000

# A worker: waits for "go", runs its chunks (index, count) and prints when it ended.
WORKER = """
import json, sys, time
from pathlib import Path
from worker.kernel import losses_chunk
from worker.warm_kernel import WarmKernel
run, cache, warm, count, processes, *indices = sys.argv[1:]
tools = WarmKernel(Path(cache)).ready() if warm == "warm" else None
import oasislmf.manager  # as a pool process has it after its first task: 1.4 s of CPU once
print("ready", flush=True)
sys.stdin.readline()
for index in indices:
    losses_chunk(Path(run), int(index), int(count), processes=int(processes),
                 numba_cache_dir=Path(cache), tools_dir=tools)
print(time.monotonic(), flush=True)
"""


@dataclass(frozen=True)
class Stage:
    chunks_seconds: float
    output_seconds: float
    peak_worker_mb: float

    @property
    def total(self) -> float:
        return self.chunks_seconds + self.output_seconds


def prepared_run(root: Path, model: demo_model.DemoModel, locations: int) -> Path:
    """Inputs and a prepared run folder of `locations` demo locations (not timed)."""
    root.mkdir(parents=True, exist_ok=True)
    location_csv = root / "location.csv"
    location_csv.write_text(demo_model.demo_locations(locations))
    work = root / "work"
    kernel.load_locations(location_csv, work)
    kernel.lookup_chunk(work, model.lookup_config, (0, 1))
    kernel.collect_keys(work, 1)
    kernel.write_input_files(work, model_settings=model.model_settings)
    run = root / "run"
    kernel.prepare_losses(
        work / kernel.INPUT_FILES,
        model.model_data_dir,
        demo_model.demo_analysis_settings(),
        run,
        model_settings=model.model_settings,
    )
    return run


def fresh(run: Path, folder: Path) -> Path:
    """A run folder sharing `run`'s prepared inputs, with no chunk done yet."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / kernel.PREPARED).symlink_to(run / kernel.PREPARED, target_is_directory=True)
    return folder


def many_events_model(root: Path, events: int) -> demo_model.DemoModel:
    """The demo model with its hazard data made for `events` events (same seed and grid)."""
    from oasislmf.computation.generate.files import (  # type: ignore[import-untyped]
        GenerateDummyModelFiles,
    )

    base = demo_model.ensure_demo_model(root / "demo")
    target = root / f"demo-{events}"
    shutil.copytree(base.lookup_config.parent, target)
    model = demo_model.model_files(target)
    generated = root / "generated"
    GenerateDummyModelFiles(
        target_dir=str(generated),
        num_vulnerabilities=demo_model.VULNERABILITIES,
        num_intensity_bins=demo_model.INTENSITY_BINS,
        num_damage_bins=demo_model.DAMAGE_BINS,
        num_events=events,
        num_areaperils=demo_model.AREA_PERILS,
        areaperils_per_event=demo_model.AREA_PERILS_PER_EVENT,
        num_periods=demo_model.PERIODS,
        random_seed=demo_model.SEED,
    ).run()
    for name in ("footprint.bin", "footprint.idx", "vulnerability.bin", "damage_bin_dict.bin"):
        shutil.copyfile(generated / "static" / name, model.model_data_dir / name)
    for name, selected in (("events", demo_model.EVENT_SET), ("occurrence", "lt")):
        for target_name in (f"{name}_{selected}.bin", f"{name}.bin"):
            shutil.copyfile(generated / "input" / f"{name}.bin", model.model_data_dir / target_name)
    settings = json.loads(model.model_settings.read_text())
    settings["model_settings"]["event_set"]["options"][0]["number_of_events"] = events
    model.model_settings.write_text(json.dumps(settings, indent=2) + "\n")
    shutil.rmtree(generated)
    return model


def tree_pss_mb(pid: int) -> float:
    """Proportional set size of a process and every process it started, in MB."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for process in processes:
        try:
            total += process.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total / 1e6


def stage(
    run: Path, cache: Path, mode: str, count: int, *, output_tools: Path | None, sample: bool
) -> Stage:
    """The loss stage of `run` in `count` chunks on WORKERS worker processes, then its output;
    the workers' memory sampled when `sample` (else its peak is 0)."""
    indices = [list(range(w, count, WORKERS)) for w in range(min(WORKERS, count))]
    processes = WORKERS if count == 1 else 1
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(run), str(cache), mode, str(count), str(processes)]
            + [str(i) for i in chunk_indices],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for chunk_indices in indices
    ]
    for worker in workers:
        assert worker.stdout is not None and worker.stdout.readline() == "ready\n"
    peak = 0.0
    started = time.monotonic()
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    while sample and any(worker.poll() is None for worker in workers):
        peak = max([peak, *(tree_pss_mb(worker.pid) for worker in workers)])
        time.sleep(SAMPLE_SECONDS)
    ends = []
    for worker in workers:
        assert worker.stdout is not None
        ends.append(float(worker.stdout.readline() or "nan"))  # CLOCK_MONOTONIC: one clock
        if worker.wait() != 0:
            raise RuntimeError(f"a {mode} worker failed (exit status {worker.returncode})")
    chunks_seconds = max(ends) - started
    started = time.monotonic()
    kernel.losses_output(run, count, numba_cache_dir=cache, tools_dir=output_tools)
    return Stage(chunks_seconds, time.monotonic() - started, peak)


def fixed_costs(
    root: Path, cache: Path, warm: WarmKernel, repeat: int
) -> dict[str, tuple[float, float]]:
    """Median seconds of chunk 1 of 8 and of the output stage, cold and warm, of a tiny run."""
    model = demo_model.ensure_demo_model(root / "demo")
    run = prepared_run(root / "tiny", model, TINY_LOCATIONS)
    found: dict[str, tuple[float, float]] = {}
    for mode, tools in (("cold", None), ("warm", warm.ready())):
        chunk_times, output_times = [], []
        for attempt in range(repeat):
            folder = fresh(run, root / f"tiny-{mode}-{attempt}")
            started = time.monotonic()
            kernel.losses_chunk(folder, 0, TINY_CHUNKS, numba_cache_dir=cache, tools_dir=tools)
            chunk_times.append(time.monotonic() - started)
            for index in range(1, TINY_CHUNKS):
                kernel.losses_chunk(
                    folder, index, TINY_CHUNKS, numba_cache_dir=cache, tools_dir=tools
                )
            started = time.monotonic()
            kernel.losses_output(folder, TINY_CHUNKS, numba_cache_dir=cache, tools_dir=tools)
            output_times.append(time.monotonic() - started)
        found[mode] = (statistics.median(chunk_times), statistics.median(output_times))
    return found


def compare(
    root: Path, run: Path, cache: Path, warm: WarmKernel, chunks: int, repeat: int
) -> dict[tuple[str, int], Stage]:
    """Each stage's median time of `repeat` runs, and its peak memory from one more."""
    results = {}
    for mode in ("cold", "warm"):
        tools = warm.ready() if mode == "warm" else None
        for count in (1, chunks):
            runs = [
                stage_once(root, run, cache, mode, count, tools, sample=False)
                for _ in range(repeat)
            ]
            memory = stage_once(root, run, cache, mode, count, tools, sample=True)
            results[(mode, count)] = Stage(
                statistics.median(s.chunks_seconds for s in runs),
                statistics.median(s.output_seconds for s in runs),
                memory.peak_worker_mb,
            )
            print(f"  {mode}, {count} chunk(s): {results[(mode, count)].total:.2f} s", flush=True)
    return results


def stage_once(
    root: Path, run: Path, cache: Path, mode: str, count: int, tools: Path | None, *, sample: bool
) -> Stage:
    """One run of a stage from a fresh folder, removed afterwards."""
    folder = fresh(run, root / f"{run.parent.name}-{mode}-{count}")
    try:
        return stage(folder, cache, mode, count, output_tools=tools, sample=sample)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def report_stage(console: Any, title: str, chunks: int, results: dict[Any, Stage]) -> None:
    from rich.table import Table

    table = Table(title=title)
    for column in ("", "cold, 1", f"cold, {chunks}", "warm, 1", f"warm, {chunks}"):
        table.add_column(column, justify="right")
    keys = [("cold", 1), ("cold", chunks), ("warm", 1), ("warm", chunks)]
    rows: list[tuple[str, Callable[[Stage], str]]] = [
        ("chunks (s)", lambda s: f"{s.chunks_seconds:.2f}"),
        ("output stage (s)", lambda s: f"{s.output_seconds:.2f}"),
        ("loss stage (s)", lambda s: f"{s.total:.2f}"),
        ("peak worker PSS (MB)", lambda s: f"{s.peak_worker_mb:.0f}"),
    ]
    for label, value in rows:
        table.add_row(label, *(value(results[k]) for k in keys))
    console.print(table)
    for mode in ("cold", "warm"):
        ratio = results[(mode, chunks)].total / results[(mode, 1)].total
        console.print(f"  {mode}: {chunks} chunks take {ratio:.2f}x the time of 1")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each fixed cost")
    parser.add_argument("--stage-repeat", type=int, default=3, help="timed runs of each stage")
    parser.add_argument("--locations", type=int, default=2000)
    parser.add_argument("--numba-cache", type=Path, default=NUMBA_CACHE)
    parser.add_argument("--skip-big", action="store_true", help="leave out the 20,000 events")
    args = parser.parse_args()
    from rich.console import Console

    console = Console(width=110)
    cache = numba_cache.ensure_built(args.numba_cache.absolute())
    with tempfile.TemporaryDirectory(prefix="bench-warm-kernel-") as folder:
        root = Path(folder)
        warm = WarmKernel(cache)
        started = time.monotonic()
        warm.ready()
        console.print(f"warm process ready in {time.monotonic() - started:.1f} s")
        try:
            costs = fixed_costs(root, cache, warm, args.repeat)
            model = demo_model.ensure_demo_model(root / "demo")
            console.print(f"{demo_model.EVENTS:,} events x {args.locations:,} locations:")
            small = compare(
                root,
                prepared_run(root / "small", model, args.locations),
                cache,
                warm,
                8,
                args.stage_repeat,
            )
            big = None
            if not args.skip_big:
                console.print(f"{BIG_EVENTS:,} events x {args.locations:,} locations:")
                many = many_events_model(root, BIG_EVENTS)
                run = prepared_run(root / "big", many, args.locations)
                big = compare(root, run, cache, warm, 4, args.stage_repeat)
        finally:
            warm.stop()
    console.print(
        f"\nFixed cost of a loss chunk ({TINY_LOCATIONS} locations, chunk 1 of {TINY_CHUNKS},"
        f" median of {args.repeat}): cold {costs['cold'][0]:.2f} s (baseline),"
        f" warm {costs['warm'][0]:.2f} s"
    )
    console.print(
        f"Output stage of that analysis: cold {costs['cold'][1]:.2f} s,"
        f" warm {costs['warm'][1]:.2f} s"
    )
    report_stage(
        console,
        f"{demo_model.EVENTS:,} events x {args.locations:,} locations, {WORKERS} workers",
        8,
        small,
    )
    if big is not None:
        report_stage(
            console,
            f"{BIG_EVENTS:,} events x {args.locations:,} locations, {WORKERS} workers",
            4,
            big,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
