"""The chunking core: how many sub-tasks an analysis stage gets, and which items each one takes.

Pure: no I/O and nothing from flask, celery, grpc, redis or sqlalchemy. Lookup splits the
location file's rows; loss splits the selected event set's events.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

from worker.configuration import ChunkingConfiguration, ChunkingStrategy

Stage = Literal["lookup", "loss"]
ConfigLike = ChunkingConfiguration | Mapping[str, Any] | None


class StageRule(NamedTuple):
    """The fields of a configuration that act on one stage."""

    strategy: ChunkingStrategy
    fixed_chunks: int
    items_per_chunk: int
    max_chunks: int


def stage_rule(config: ConfigLike, stage: Stage) -> StageRule:
    typed = _typed(config)
    if stage == "lookup":
        return StageRule(
            typed.lookup_strategy,
            typed.fixed_lookup_chunks,
            typed.dynamic_locations_per_lookup,
            typed.dynamic_chunks_max,
        )
    if stage == "loss":
        return StageRule(
            typed.loss_strategy,
            typed.fixed_analysis_chunks,
            typed.dynamic_events_per_analysis,
            typed.dynamic_chunks_max,
        )
    raise ValueError(f"stage must be 'lookup' or 'loss', got {stage!r}")


def chunk_count(config: ConfigLike, *, stage: Stage, items: int) -> int:
    """Sub-tasks for a stage of `items` rows or events; never more chunks than items."""
    rule = stage_rule(config, stage)
    if items < 1:
        raise ValueError(f"a {stage} stage needs at least one item to split, got {items}")
    if rule.strategy is ChunkingStrategy.FIXED_CHUNKS:
        chunks = rule.fixed_chunks
    else:
        chunks = min(-(-items // rule.items_per_chunk), rule.max_chunks)
    return min(chunks, items)


def partition(items: int, chunks: int) -> list[range]:
    """`items` cut into `chunks` contiguous ranges whose sizes differ by at most one.

    The larger ranges come first, as numpy's array_split orders them, so chunk i of N holds the
    same items here as on an OasisPlatform worker.
    """
    if not 1 <= chunks <= items:
        raise ValueError(f"cannot cut {items} items into {chunks} non-empty chunks")
    size, larger = divmod(items, chunks)
    ranges = []
    start = 0
    for index in range(chunks):
        stop = start + size + (1 if index < larger else 0)
        ranges.append(range(start, stop))
        start = stop
    return ranges


def effective_configuration(
    model: ConfigLike, override: Mapping[str, Any] | None = None
) -> ChunkingConfiguration:
    """The analysis's configuration: each field its override sets, else the model's value.

    (The reference platform takes the whole override or nothing; inheriting field by field means
    an override of one field does not reset the others to their defaults.)
    """
    base = _typed(model)
    if not override:
        return base
    return ChunkingConfiguration.model_validate({**base.model_dump(), **override})


def _typed(config: ConfigLike) -> ChunkingConfiguration:
    if isinstance(config, ChunkingConfiguration):
        return config
    return ChunkingConfiguration.model_validate(config or {})
