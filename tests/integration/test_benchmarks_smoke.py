"""The live-scaling benchmarks run end to end in their `--quick` form and print their figures.

Each starts its own servers on free ports of 127.0.0.1 and stops them; the figures depend on the
machine, so only their presence is checked (no `--check`: a busy machine may miss a target).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

BENCH = Path(__file__).resolve().parents[2] / "bench"
NUMBER = r"\d[\d,]*(?:\.\d+)?"
# Script -> rows that must hold figures: a label, then p50 and p99 (or the first two columns).
FIGURES = {
    "activation.py": (
        r"ours: StreamIsActive push \(measured\)",
        r"IsActive first true, polled every 10 ms \(measured\)",
        r"baseline: poll only, every 30 s \(computed\)",
    ),
    "getmetrics.py": (
        r"scaler",
        r"baseline: constant servicer",
    ),
    "config_change.py": (
        r"ours: GetMetrics answers the new count \(measured\)",
        r"baseline: upstream controller, once-a-minute digest \(computed\)",
    ),
}
# Script -> the summary lines it must print after its table.
SUMMARIES = {
    "activation.py": (r"\bp99 <= 1 s\W+(PASS|FAIL)\b",),
    "getmetrics.py": (
        r"target: p99 <= 5 ms at 500 calls/s: (PASS|FAIL)",
        rf"highest rate sustained .*: scaler ({NUMBER} calls/s|none of the steps),"
        rf" baseline ({NUMBER} calls/s|none of the steps)",
    ),
    "config_change.py": (r"\bp99 <= 1 s\W+(PASS|FAIL)\b",),
}


@pytest.mark.parametrize("script", sorted(FIGURES))
def test_quick_run_prints_its_figures_and_baseline(script: str) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for label in FIGURES[script]:
        row = rf"^\W*{label}\W+({NUMBER})\W+({NUMBER})"
        assert re.search(row, done.stdout, re.MULTILINE), (
            f"no figures for {label!r}:\n{done.stdout}"
        )
    for summary in SUMMARIES[script]:
        assert re.search(summary, done.stdout), f"no {summary!r}:\n{done.stdout}"
    assert "load average" in done.stdout
