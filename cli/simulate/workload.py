"""From a trace to the simulator's analyses: each stage's chunks and how long each one runs.

Chunk counts and the items of each chunk come from the real chunking core (`chunk_count`,
`partition`, `effective_configuration`), the sub-tasks around the chunks from `worker.stages`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from cli.simulate.trace import AnalysisSpec, ChunkSeconds, ModelSpec, StageCost, Trace
from worker.chunking import Stage, chunk_count, effective_configuration, partition
from worker.configuration import ChunkingConfiguration
from worker.stages import input_generation, losses

# Sub-tasks every stage records before and after its chunks (worker/stages.py).
BEFORE = {"lookup": len(input_generation(1).before), "loss": len(losses(1).before)}
AFTER = {"lookup": len(input_generation(1).after), "loss": len(losses(1).after)}
# The upstream platform's sub-tasks per stage besides the chunks (N+6 inputs, N+5 losses).
UPSTREAM_SERIAL = {"lookup": 6, "loss": 5}


@dataclass(frozen=True, slots=True)
class StageWork:
    stage: Stage
    chunk_seconds: tuple[float, ...]
    split_seconds: float
    join_seconds: float

    @property
    def chunks(self) -> int:
        return len(self.chunk_seconds)

    @property
    def sub_tasks(self) -> int:
        """Sub-tasks recorded when the stage starts (all of them, up front)."""
        return BEFORE[self.stage] + self.chunks + AFTER[self.stage]


@dataclass(frozen=True, slots=True)
class AnalysisWork:
    model: int
    arrival: float
    priority: int
    stages: tuple[StageWork, ...]


def analyses_of(trace: Trace) -> list[AnalysisWork]:
    """Every analysis of the trace (`count` expanded), in arrival order (ties: trace order)."""
    index = {name: i for i, name in enumerate(trace.models)}
    works = []
    for spec in trace.analyses:
        model = trace.models[spec.model]
        stages = _stages(model, spec)
        for repeat in range(spec.count):
            arrival = spec.arrival + repeat * spec.every
            works.append(AnalysisWork(index[spec.model], arrival, spec.priority, stages))
    works.sort(key=lambda work: work.arrival)  # stable: ties keep the trace's order
    return works


def _stages(model: ModelSpec, spec: AnalysisSpec) -> tuple[StageWork, ...]:
    chunking = effective_configuration(model.chunking, spec.chunking)
    stages = []
    given: tuple[tuple[Stage, int | None, int | None, ChunkSeconds | None], ...] = (
        ("lookup", spec.locations, spec.lookup_chunks, spec.lookup_chunk_seconds),
        ("loss", spec.events, spec.loss_chunks, spec.loss_chunk_seconds),
    )
    for stage, items, chunks, seconds in given:
        if items is None and chunks is None:
            continue
        cost = model.durations.lookup if stage == "lookup" else model.durations.loss
        durations = _chunk_seconds(chunking, stage, items, chunks, seconds, cost)
        stages.append(StageWork(stage, durations, model.durations.split, model.durations.join))
    return tuple(stages)


def _chunk_seconds(
    chunking: ChunkingConfiguration,
    stage: Stage,
    items: int | None,
    chunks: int | None,
    seconds: ChunkSeconds | None,
    cost: StageCost,
) -> tuple[float, ...]:
    if items is not None:
        count = chunk_count(chunking, stage=stage, items=items)
        if isinstance(seconds, list):
            if len(seconds) != count:
                raise ValueError(
                    f"{stage}_chunk_seconds has {len(seconds)} values but the stage has "
                    f"{count} chunks"
                )
            return tuple(seconds)
        if seconds is not None:
            return (float(seconds),) * count
        return _modelled(items, count, cost.per_item, cost.overhead)
    assert chunks is not None and seconds is not None  # the trace checks this
    return tuple(seconds) if isinstance(seconds, list) else (float(seconds),) * chunks


@lru_cache(maxsize=4096)
def _modelled(items: int, chunks: int, per_item: float, overhead: float) -> tuple[float, ...]:
    # Many analyses of a trace are alike: the partition of one is worked out once.
    return tuple(overhead + per_item * len(part) for part in partition(items, chunks))
