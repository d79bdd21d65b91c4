"""The chunking core: worked cases of the design brief, the minimum rule, even partitions."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from worker.chunking import Stage, chunk_count, effective_configuration, partition
from worker.configuration import ChunkingConfiguration, ChunkingStrategy

DYN = "DYNAMIC_CHUNKS"

CASES: list[tuple[str, dict[str, Any], Stage, int, int]] = [
    # (id, configuration, stage, items, chunks)
    (
        "100,000 rows, 1 per chunk, max 200",
        {"lookup_strategy": DYN, "dynamic_locations_per_lookup": 1, "dynamic_chunks_max": 200},
        "lookup",
        100_000,
        200,
    ),
    (
        "1,447 events, 100 per chunk",
        {"loss_strategy": DYN, "dynamic_events_per_analysis": 100},
        "loss",
        1447,
        15,
    ),
    (
        "85,803 rows, 2,000 per chunk, max 50",
        {"lookup_strategy": DYN, "dynamic_locations_per_lookup": 2000, "dynamic_chunks_max": 50},
        "lookup",
        85_803,
        43,
    ),
    (
        "38,127 events, 1,000 per chunk",
        {"loss_strategy": DYN, "dynamic_events_per_analysis": 1000},
        "loss",
        38_127,
        39,
    ),
    ("4 rows asked for 5 chunks", {"fixed_lookup_chunks": 5}, "lookup", 4, 4),
    ("4 events asked for 5 chunks", {"fixed_analysis_chunks": 5}, "loss", 4, 4),
    ("dynamic events capped by the minimum rule", {"loss_strategy": DYN}, "loss", 3, 3),
    ("dynamic cap", {"loss_strategy": DYN, "dynamic_chunks_max": 7}, "loss", 1447, 7),
    ("defaults: one fixed chunk", {}, "lookup", 12_598, 1),
    ("PiWind lookup, fixed 5", {"fixed_lookup_chunks": 5}, "lookup", 10, 5),
    ("PiWind loss, fixed 10", {"fixed_analysis_chunks": 10}, "loss", 1447, 10),
    (
        "loss ignores lookup fields",
        {"fixed_lookup_chunks": 9, "lookup_strategy": DYN, "dynamic_locations_per_lookup": 1},
        "loss",
        100,
        1,
    ),
    (
        "lookup ignores loss fields",
        {"fixed_analysis_chunks": 9, "loss_strategy": DYN, "dynamic_events_per_analysis": 1},
        "lookup",
        100,
        1,
    ),
    ("dynamic lookup default size", {"lookup_strategy": DYN}, "lookup", 12_598, 2),
]


@pytest.mark.parametrize(
    ("config", "stage", "items", "chunks"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_worked_cases(config: dict[str, Any], stage: Stage, items: int, chunks: int) -> None:
    assert chunk_count(config, stage=stage, items=items) == chunks
    assert (
        chunk_count(ChunkingConfiguration.model_validate(config), stage=stage, items=items)
        == chunks
    )


def test_100000_rows_in_200_chunks_of_500() -> None:
    assert [len(r) for r in partition(100_000, 200)] == [500] * 200


def test_larger_chunks_come_first_as_array_split_orders_them() -> None:
    assert partition(10, 4) == [range(0, 3), range(3, 6), range(6, 8), range(8, 10)]


@pytest.mark.parametrize(("items", "chunks"), [(0, 1), (3, 0), (3, 4), (-1, 1)])
def test_impossible_partitions_are_refused(items: int, chunks: int) -> None:
    with pytest.raises(ValueError, match="cannot cut"):
        partition(items, chunks)


def test_a_stage_with_no_items_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one item"):
        chunk_count({}, stage="lookup", items=0)


def test_an_unknown_stage_is_refused() -> None:
    with pytest.raises(ValueError, match="stage must be"):
        chunk_count({}, stage="keys", items=10)  # type: ignore[arg-type]


def test_override_takes_precedence_field_by_field() -> None:
    model = {
        "lookup_strategy": DYN,
        "dynamic_locations_per_lookup": 500,
        "fixed_analysis_chunks": 4,
    }
    effective = effective_configuration(model, {"fixed_analysis_chunks": 8})
    assert effective.fixed_analysis_chunks == 8
    assert effective.lookup_strategy is ChunkingStrategy.DYNAMIC_CHUNKS
    assert effective.dynamic_locations_per_lookup == 500


def test_no_override_is_the_model_configuration() -> None:
    model = ChunkingConfiguration(fixed_lookup_chunks=3)
    assert effective_configuration(model, None) == model
    assert effective_configuration(None, {}) == ChunkingConfiguration()


@pytest.mark.parametrize(
    "override",
    [{"fixed_analysis_chunks": None}, {"fixed_analysis_chunks": 0}, {"fixed_analysis_chunk": 2}],
)
def test_a_bad_override_is_refused_naming_the_field(override: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match=next(iter(override))):
        effective_configuration({}, override)


@given(st.integers(min_value=1, max_value=100_000), st.data())
def test_partitions_cover_every_item_once_and_are_even(items: int, data: st.DataObject) -> None:
    chunks = data.draw(st.integers(min_value=1, max_value=min(items, 500)))
    parts = partition(items, chunks)
    assert len(parts) == chunks
    assert [i for part in parts for i in part] == list(range(items))
    sizes = [len(part) for part in parts]
    assert max(sizes) - min(sizes) <= 1
    assert min(sizes) >= 1


positive = st.integers(min_value=1, max_value=1_000_000)


@given(
    st.sampled_from(["lookup", "loss"]),
    st.sampled_from(ChunkingStrategy),
    positive,
    positive,
    positive,
    positive,
)
def test_chunks_never_exceed_items_or_the_dynamic_cap(
    stage: Stage, strategy: ChunkingStrategy, items: int, fixed: int, per_chunk: int, cap: int
) -> None:
    config = ChunkingConfiguration(
        lookup_strategy=strategy,
        loss_strategy=strategy,
        fixed_lookup_chunks=fixed,
        fixed_analysis_chunks=fixed,
        dynamic_locations_per_lookup=per_chunk,
        dynamic_events_per_analysis=per_chunk,
        dynamic_chunks_max=cap,
    )
    chunks = chunk_count(config, stage=stage, items=items)
    assert 1 <= chunks <= items
    if strategy is ChunkingStrategy.DYNAMIC_CHUNKS:
        assert chunks <= cap
        # Each chunk holds at most per_chunk items unless the cap forced bigger chunks.
        if chunks < cap:
            assert max(len(p) for p in partition(items, chunks)) <= per_chunk
    else:
        assert chunks == min(fixed, items)
