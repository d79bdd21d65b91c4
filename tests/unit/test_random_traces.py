"""The random traces of bench/random_traces.py: valid, the same for a seed, and runnable to the
end under both rules (a trace that a rule cannot finish would say nothing of the rule)."""

from __future__ import annotations

import pytest

from bench.random_traces import random_trace
from cli.simulate.engine import Simulation
from cli.simulate.ours import KedaScaling
from cli.simulate.upstream import UpstreamScaling

SEEDS = range(40)


def test_a_seed_gives_the_same_trace_and_seeds_give_different_ones() -> None:
    assert random_trace(7) == random_trace(7)
    assert len({random_trace(seed).model_dump_json() for seed in SEEDS}) == len(SEEDS)


def test_the_traces_cover_what_the_module_says() -> None:
    traces = [random_trace(seed) for seed in SEEDS]
    assert {len(t.models) for t in traces} == {1, 2, 3}
    assert any(t.budget.total_worker_limit is not None for t in traces)
    assert any(t.budget.total_worker_limit is None for t in traces)
    assert {m.slots_per_worker for t in traces for m in t.models.values()} == {1, 2}
    assert len({t.keda.pod_startup for t in traces}) == 4


@pytest.mark.parametrize("seed", SEEDS)
def test_both_rules_end_every_analysis_and_ours_keeps_the_budget(seed: int) -> None:
    drawn = random_trace(seed)
    analyses = sum(spec.count for spec in drawn.analyses)
    ours = Simulation(drawn, KedaScaling(drawn), record=False).run()
    upstream = Simulation(drawn, UpstreamScaling(drawn), record=False).run()
    assert ours.completed == upstream.completed == analyses
    limit = drawn.budget.total_worker_limit
    # No floors here: the budget bounds every pod (docs/budget.md, rule 4).
    assert limit is None or ours.peak_workers <= limit
