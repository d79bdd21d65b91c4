"""The simulator's figures: the shipped traces under our rules and the upstream controller's,
and the time the simulator takes for 1,000 models x 100 analyses.

Run from the repository root: .venv/bin/python bench/simulate.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from cli.commands.simulate import load_traces
from cli.simulate.engine import Simulation
from cli.simulate.ours import KedaScaling
from cli.simulate.trace import Trace
from cli.simulate.upstream import UpstreamScaling

TRACES = Path(__file__).resolve().parents[1] / "docs" / "examples" / "traces"
SHIPPED = ["piwind-10", "chaz", "three-analyses", "fleet"]
# The scale target: the simulator's own run time for 1,000 models x 100 analyses.
MODELS, ANALYSES, TARGET_SECONDS = 1000, 100, 10.0


def shipped() -> None:
    print(
        f"{'trace':<16} {'rules':<9} {'worker-s':>10} {'ratio':>6} {'makespan s':>11} {'ratio':>6}"
    )
    for name in SHIPPED:
        (trace,) = load_traces(TRACES / f"{name}.yaml", [])
        ours = Simulation(trace, KedaScaling(trace), record=False).run()
        upstream = Simulation(trace, UpstreamScaling(trace), record=False).run()
        for result in (ours, upstream):
            print(
                f"{name:<16} {result.policy:<9} {result.worker_seconds:>10,.0f} "
                f"{result.worker_seconds / upstream.worker_seconds:>6.2f} "
                f"{result.makespan:>11,.0f} {result.makespan / upstream.makespan:>6.2f}"
            )
    print("ratios: against upstream (baseline) in the same run\n")


def fleet(models: int, analyses: int, limit: int | None) -> Trace:
    """Each model runs a batch of `analyses` (6 s apart, 2 loss chunks of 30 s each); the
    batches start one after another over 8 hours."""
    specs = {
        f"Model-{i:04d}-1": {
            "scaling": {
                "scaling_strategy": "DYNAMIC_TASKS",
                "chunks_per_worker": 2,
                "worker_count_max": 4,
            },
            "chunking": {"fixed_analysis_chunks": 2},
            "durations": {"split": 0, "join": 0},
        }
        for i in range(models)
    }
    work = [
        {
            "model": name,
            "arrival": i * 28800 / models,
            "events": 1447,
            "count": analyses,
            "every": 6,
            "loss_chunk_seconds": 30,
            "priority": 1 + i % 10,
        }
        for i, name in enumerate(specs)
    ]
    return Trace.model_validate(
        {
            "name": f"{models}x{analyses}",
            "models": specs,
            "analyses": work,
            "budget": {"total_worker_limit": limit},
            "keda": {"polling_interval": 15, "cooldown_period": 60},
        }
    )


def scale() -> bool:
    passed = True
    for limit in (None, 200):
        trace = fleet(MODELS, ANALYSES, limit)
        began = time.perf_counter()
        result = Simulation(trace, KedaScaling(trace), record=False).run()
        took = time.perf_counter() - began
        verdict = "PASS" if took < TARGET_SECONDS else "FAIL"
        passed &= took < TARGET_SECONDS
        sub_tasks = sum(m.sub_tasks for m in result.models)
        print(
            f"{MODELS} models x {ANALYSES} analyses, budget {limit}: {took:.1f} s "
            f"({sub_tasks:,} sub-tasks, {result.completed:,} analyses done) "
            f"target < {TARGET_SECONDS:.0f} s: {verdict}"
        )
    return passed


if __name__ == "__main__":
    shipped()
    sys.exit(0 if scale() else 1)
