"""Benchmark: cutting a 1,000,000-row OED location file into 200 chunks, ours against upstream.

Ours is what a worker runs for `prepare-input-generation-params`: `worker.kernel.load_locations`
(the streaming split of `worker.location_split`: a file per chunk, every location numbered over
the whole portfolio). Upstream is what an OasisPlatform worker does: pandas `read_csv` of the
whole file, then `np.array_split` into 200 parts. Under pandas 3 `np.array_split(frame, 200)`
turns the frame into a numpy object array (pandas 2 gave DataFrame slices), so upstream is
measured both ways, and the targets are held against the leaner, faster of the two:

- time: ours no slower (process wall time: a fresh interpreter, its imports and the split);
- memory: ours at most a quarter of upstream's peak RSS (VmHWM of the process).

Each run is a fresh subprocess that measures itself; each side runs `--repeat` times, in turns,
and the table shows median times and the highest peak. Exits 1 if a target is missed.

    .venv/bin/python bench/split_locations.py [--rows 1000000] [--chunks 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OURS, UPSTREAM, LITERAL = "ours", "upstream", "upstream-literal"
LABELS = {
    OURS: "ours",
    UPSTREAM: "upstream (baseline)",
    LITERAL: "upstream, literal",
}
LEGEND = {
    OURS: "worker.kernel.load_locations: the streaming split, a file per chunk, numbered",
    UPSTREAM: "pandas.read_csv, then np.array_split's row ranges as DataFrame slices",
    LITERAL: "pandas.read_csv, then np.array_split(frame) as is (pandas 3: object arrays)",
}
BASELINE = UPSTREAM
TIME_RATIO_MAX = 1.0
MEMORY_RATIO_MAX = 0.25


# --- one measured run, in its own process -----------------------------------------------------


def child(side: str, location_csv: Path, work_dir: Path, chunks: int) -> None:
    """Split once, then print the split's seconds, the parts made and this process's peak RSS."""
    if side == OURS:
        seconds, parts = _ours(location_csv, work_dir, chunks)
    else:
        seconds, parts = _upstream(location_csv, chunks, literal=side == LITERAL)
    print(json.dumps({"seconds": seconds, "parts": parts, "peak_mb": _peak_mb()}))


def _ours(location_csv: Path, work_dir: Path, chunks: int) -> tuple[float, int]:
    from worker import kernel
    from worker.location_split import read_split

    start = time.perf_counter()
    kernel.load_locations(location_csv, work_dir, chunks)
    seconds = time.perf_counter() - start
    return seconds, len(read_split(work_dir / kernel.LOCATIONS).pieces)


def _upstream(location_csv: Path, chunks: int, *, literal: bool) -> tuple[float, int]:
    import numpy as np
    import pandas as pd  # type: ignore[import-untyped]

    start = time.perf_counter()
    frame = pd.read_csv(location_csv)
    if literal:
        parts = np.array_split(frame, chunks)
    else:
        bounds = np.array_split(np.arange(len(frame)), chunks)
        parts = [frame.iloc[b[0] : b[-1] + 1] for b in bounds]
    return time.perf_counter() - start, len(parts)


def _peak_mb() -> float:
    """VmHWM (Linux), else ru_maxrss: the most memory this process ever held resident."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the benchmark ----------------------------------------------------------------------------


@dataclass
class Runs:
    walls: list[float]
    splits: list[float]
    peaks: list[float]

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)

    @property
    def split(self) -> float:
        return statistics.median(self.splits)

    @property
    def peak(self) -> float:
        return max(self.peaks)


def measure(side: str, location_csv: Path, scratch: Path, chunks: int) -> dict[str, Any]:
    """One run of `side` in a fresh interpreter: its wall time, and what it reports."""
    work_dir = scratch / f"work-{side}"
    command = [sys.executable, __file__, "--child", side, str(location_csv), str(work_dir)]
    start = time.perf_counter()
    done = subprocess.run([*command, str(chunks)], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    shutil.rmtree(work_dir, ignore_errors=True)
    if done.returncode:
        raise RuntimeError(f"{side} failed:\n{done.stderr}")
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if report["parts"] != chunks:
        raise RuntimeError(f"{side} made {report['parts']} parts, not {chunks}")
    return {**report, "wall": wall}


def write_locations(path: Path, rows: int) -> None:
    from worker.demo_model import demo_locations

    path.write_text(demo_locations(rows))


def run(rows: int, chunks: int, repeat: int) -> int:
    from rich.console import Console

    console = Console(width=100)
    with tempfile.TemporaryDirectory(prefix="bench-split-") as folder:
        scratch = Path(folder)
        location_csv = scratch / "location.csv"
        with console.status(f"writing {rows:,} demo locations"):
            write_locations(location_csv, rows)
        size = location_csv.stat().st_size / 2**20
        console.print(f"{location_csv.name}: {rows:,} rows, {size:.1f} MB, cut into {chunks}")
        runs = {side: Runs([], [], []) for side in LABELS}
        for turn in range(repeat):
            for side in LABELS if turn % 2 == 0 else reversed(LABELS):
                with console.status(f"run {turn + 1} of {repeat}: {side}"):
                    report = measure(side, location_csv, scratch, chunks)
                runs[side].walls.append(report["wall"])
                runs[side].splits.append(report["seconds"])
                runs[side].peaks.append(report["peak_mb"])
    return report_table(console, runs, repeat)


def report_table(console: Any, runs: dict[str, Runs], repeat: int) -> int:
    from rich.table import Table

    base = runs[BASELINE]
    table = Table(title=f"Splitting the location file (median of {repeat} runs, highest peak)")
    for column in (
        "",
        "process wall s",
        "split only s",
        "peak RSS MB",
        "wall / base",
        "peak / base",
    ):
        table.add_column(column, justify="left" if not column else "right")
    for side, measured in runs.items():
        table.add_row(
            LABELS[side],
            f"{measured.wall:.2f}",
            f"{measured.split:.2f}",
            f"{measured.peak:.0f}",
            f"{measured.wall / base.wall:.2f}",
            f"{measured.peak / base.peak:.2f}",
        )
    console.print(table)
    for side, text in LEGEND.items():
        console.print(f"  {LABELS[side]}: {text}")
    ours = runs[OURS]
    targets = [
        ("time: ours no slower (process wall)", ours.wall / base.wall, TIME_RATIO_MAX),
        ("memory: ours <= 1/4 of the peak", ours.peak / base.peak, MEMORY_RATIO_MAX),
    ]
    for name, ratio, limit in targets:
        verdict = "[green]PASS[/]" if ratio <= limit else "[red]FAIL[/]"
        console.print(f"{verdict} {name}: {ratio:.2f} (target <= {limit:.2f})")
    split_ratio = ours.split / base.split
    console.print(f"(split only, imports left out: ours / baseline = {split_ratio:.2f})")
    return 0 if all(ratio <= limit for _, ratio, limit in targets) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=4, metavar=("SIDE", "CSV", "WORK_DIR", "CHUNKS"))
    args = parser.parse_args()
    if args.child:
        side, location_csv, work_dir, chunks = args.child
        child(side, Path(location_csv), Path(work_dir), int(chunks))
        return 0
    return run(args.rows, args.chunks, args.repeat)


if __name__ == "__main__":
    sys.exit(main())
