"""Traces nobody chose: workloads drawn at random, each from its seed, to run both rules on.

The shipped traces are few and the rule was measured on them; these check that what holds on
them holds on work of other shapes (docs/simulate.md, "Traces nobody chose"). A seed gives the
same trace on every machine and Python (`random.Random` is stable across versions), so a case
found here can be written out (`bench/simulate.py --random-trace SEED`) and run again with
`oasis-autoscaler simulate`.

What a trace may hold: 1-3 DYNAMIC_TASKS models (chunks per worker 1-10, at most 3-12 workers,
one or two slots per worker), each with its own fixed chunking (1-20 lookup chunks, 1-40 loss
chunks) and durations (splits of 1-15 s, joins of 2-70 s, chunks of a few seconds to a few
minutes); 1-6 groups of 1-5 analyses each, arriving within 15 minutes, a group's analyses
5-200 s apart, at priorities 1-10; a cluster whose pods start in 10, 20, 30 or 60 s; and in
three traces out of ten a fleet budget of 3-10 workers.
"""

from __future__ import annotations

import random
from typing import Any

from cli.simulate.trace import Trace

CHUNKS_PER_WORKER = (1, 2, 4, 5, 10)
WORKER_COUNT_MAX = (3, 5, 8, 10, 12)
SLOTS_PER_WORKER = (1, 1, 1, 2)
POD_STARTUP_SECONDS = (10, 20, 30, 60)
LOCATIONS = (10, 100, 1000, 5000)
EVENTS = (100, 1447, 5000)
BUDGET_SHARE = 0.3


def random_trace(seed: int) -> Trace:
    """The trace of `seed`: valid, and the same for the same seed."""
    draw = random.Random(seed)
    models = {f"Model-{i}-1": _model(draw) for i in range(draw.choice((1, 1, 2, 3)))}
    names = sorted(models)
    analyses = [_analyses(draw, draw.choice(names)) for _ in range(draw.randint(1, 6))]
    data: dict[str, Any] = {
        "name": f"random-{seed}",
        "keda": {"pod_startup": draw.choice(POD_STARTUP_SECONDS)},
        "models": models,
        "analyses": analyses,
    }
    if draw.random() < BUDGET_SHARE:
        data["budget"] = {"total_worker_limit": draw.randint(3, 10)}
    return Trace.model_validate(data)


def _model(draw: random.Random) -> dict[str, Any]:
    return {
        "scaling": {
            "scaling_strategy": "DYNAMIC_TASKS",
            "chunks_per_worker": draw.choice(CHUNKS_PER_WORKER),
            "worker_count_max": draw.choice(WORKER_COUNT_MAX),
        },
        "chunking": {
            "fixed_lookup_chunks": draw.randint(1, 20),
            "fixed_analysis_chunks": draw.randint(1, 40),
        },
        "durations": {
            "lookup": {
                "per_item": draw.choice((0.001, 0.01, 0.05)),
                "overhead": round(draw.uniform(2, 30), 1),
            },
            "loss": {
                "per_item": draw.choice((0.002, 0.02, 0.1)),
                "overhead": round(draw.uniform(5, 60), 1),
            },
            "split": round(draw.uniform(1, 15), 1),
            "join": round(draw.uniform(2, 70), 1),
        },
        "slots_per_worker": draw.choice(SLOTS_PER_WORKER),
    }


def _analyses(draw: random.Random, model: str) -> dict[str, Any]:
    return {
        "model": model,
        "arrival": round(draw.uniform(0, 900), 1),
        "locations": draw.choice(LOCATIONS),
        "events": draw.choice(EVENTS),
        "priority": draw.randint(1, 10),
        "count": draw.randint(1, 5),
        "every": round(draw.uniform(5, 200), 1),
    }
