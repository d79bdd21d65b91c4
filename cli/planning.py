"""`oasis-autoscaler plan`: chunks per stage and the workers each strategy asks for.

For tuning a model before touching a cluster: the same cores as the services, on a workload
given as numbers. At a stage's peak every chunk of every analysis is queued, so a stage with
C chunks across A analyses asks for workers with analyses=A and pending=A*C.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scaler.configuration import ScalingConfiguration, ScalingStrategy
from scaler.strategies import desired_workers
from worker.chunking import Stage, chunk_count, partition, stage_rule
from worker.configuration import ChunkingConfiguration, ChunkingStrategy


@dataclass(frozen=True)
class StageChunks:
    stage: Stage
    strategy: ChunkingStrategy
    items: int
    chunks: int
    smallest_chunk: int
    largest_chunk: int


@dataclass(frozen=True)
class StrategyPlan:
    strategy: ScalingStrategy
    configured: bool
    idle: int
    # Workers at the peak of each planned stage, keyed by stage.
    peaks: dict[Stage, int]


@dataclass(frozen=True)
class Plan:
    analyses: int
    stages: list[StageChunks]
    strategies: list[StrategyPlan]

    def as_dict(self) -> dict[str, Any]:
        return {
            "analyses": self.analyses,
            "stages": [
                {
                    "stage": s.stage,
                    "strategy": s.strategy.value,
                    "items": s.items,
                    "chunks": s.chunks,
                    "smallest_chunk": s.smallest_chunk,
                    "largest_chunk": s.largest_chunk,
                }
                for s in self.stages
            ],
            "strategies": [
                {
                    "strategy": s.strategy.value,
                    "configured": s.configured,
                    "idle": s.idle,
                    "peak_workers": dict(s.peaks),
                }
                for s in self.strategies
            ],
        }


def make_plan(
    scaling: ScalingConfiguration,
    chunking: ChunkingConfiguration,
    *,
    analyses: int,
    locations: int | None = None,
    events: int | None = None,
) -> Plan:
    if analyses < 1:
        raise ValueError(f"analyses must be at least 1, got {analyses}")
    workload: list[tuple[Stage, int | None]] = [("lookup", locations), ("loss", events)]
    stages = [
        _stage_chunks(chunking, stage, items) for stage, items in workload if items is not None
    ]
    strategies = [
        _strategy_plan(scaling, strategy, analyses, stages) for strategy in ScalingStrategy
    ]
    return Plan(analyses=analyses, stages=stages, strategies=strategies)


def _stage_chunks(chunking: ChunkingConfiguration, stage: Stage, items: int) -> StageChunks:
    chunks = chunk_count(chunking, stage=stage, items=items)
    sizes = [len(part) for part in partition(items, chunks)]
    strategy = stage_rule(chunking, stage).strategy
    return StageChunks(stage, strategy, items, chunks, min(sizes), max(sizes))


def _strategy_plan(
    scaling: ScalingConfiguration,
    strategy: ScalingStrategy,
    analyses: int,
    stages: list[StageChunks],
) -> StrategyPlan:
    config = scaling.model_copy(update={"scaling_strategy": strategy})
    peaks = {
        stage.stage: desired_workers(config, analyses=analyses, pending=analyses * stage.chunks)
        for stage in stages
    }
    return StrategyPlan(
        strategy=strategy,
        configured=strategy is scaling.scaling_strategy,
        idle=desired_workers(config, analyses=0, pending=0),
        peaks=peaks,
    )
