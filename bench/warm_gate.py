"""Benchmark: the demo, with and without the warm gate (worker/warm_gate.py).

`oasis-autoscaler demo` runs the whole local stack: a private Redis, the API, the scaler and the
local KEDA stand-in, which starts workers as the demo analysis's chunks are queued. The first
worker runs the analysis's serial steps; when the 8 loss chunks are queued, the stand-in starts
more workers. Without the gate (`OASIS_AUTOSCALER_WARM_UP_WAIT_SECONDS=0`, the baseline) a new
worker takes a chunk at once and runs it through its own warm-up; with it (the default) it takes
none until its pool process is warm, and the warm worker runs the chunks meanwhile.

Each setting runs `--repeat` times, in turns. From each run's sub-task records (the API's
SQLite database in the demo's data dir) it prints the loss stage (the first loss chunk queued to
the last one ended), the analysis (its first sub-task queued to its last ended), the longest loss
chunk, and how many workers ran loss chunks; then the medians of each setting.

    .venv/bin/python bench/warm_gate.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

CLI = str(Path(sys.executable).with_name("oasis-autoscaler"))
SETTINGS = {"without the gate (baseline)": "0", "with the gate (default)": None}
LOSS_CHUNK = "Generate losses chunk"


@dataclass(frozen=True)
class Run:
    loss_stage: float
    analysis: float
    longest_chunk: float
    chunk_workers: int


def demo(wait_seconds: str | None) -> Run:
    env = dict(os.environ)
    env.pop("OASIS_AUTOSCALER_WARM_UP_WAIT_SECONDS", None)
    if wait_seconds is not None:
        env["OASIS_AUTOSCALER_WARM_UP_WAIT_SECONDS"] = wait_seconds
    with tempfile.TemporaryDirectory(prefix="bench-warm-gate-") as folder:
        subprocess.run(
            [CLI, "demo", "--data-dir", folder],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return measured(Path(folder) / "api.sqlite3")


def measured(database: Path) -> Run:
    with sqlite3.connect(database) as connection:
        rows = connection.execute(
            "SELECT name, queue_time, start_time, end_time, worker FROM sub_tasks"
        ).fetchall()
    times = [
        (name, *map(_seconds, (queued, started, ended)), w)
        for name, queued, started, ended, w in rows
    ]
    chunks = [row for row in times if row[0].startswith(LOSS_CHUNK)]
    return Run(
        loss_stage=max(r[3] for r in chunks) - min(r[1] for r in chunks),
        analysis=max(r[3] for r in times) - min(r[1] for r in times),
        longest_chunk=max(r[3] - r[2] for r in chunks),
        chunk_workers=len({r[4].split("@")[0] for r in chunks}),
    )


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    runs: dict[str, list[Run]] = {label: [] for label in SETTINGS}
    print(
        f"{'setting':<28} {'loss stage s':>12} {'analysis s':>11} "
        f"{'longest chunk s':>16} {'workers':>8}"
    )
    for _ in range(args.repeat):
        for label, wait_seconds in SETTINGS.items():
            run = demo(wait_seconds)
            runs[label].append(run)
            print(
                f"{label:<28} {run.loss_stage:>12.2f} {run.analysis:>11.2f} "
                f"{run.longest_chunk:>16.2f} {run.chunk_workers:>8}"
            )
    print("medians")
    for label, measured_runs in runs.items():
        print(
            f"{label:<28} "
            f"{statistics.median(r.loss_stage for r in measured_runs):>12.2f} "
            f"{statistics.median(r.analysis for r in measured_runs):>11.2f} "
            f"{statistics.median(r.longest_chunk for r in measured_runs):>16.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
