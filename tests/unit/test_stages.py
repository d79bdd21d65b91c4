"""The sub-tasks of each stage carry OasisPlatform v2's slugs, chunks numbered from 1."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.stages import input_generation, losses


def test_input_generation_slugs() -> None:
    assert [t.slug for t in input_generation(3).sub_tasks] == [
        "prepare-input-generation-params",
        "prepare-keys-file-1",
        "prepare-keys-file-2",
        "prepare-keys-file-3",
        "collect-keys",
        "write-input-files",
        "record-input-files",
        "cleanup",
    ]


def test_loss_slugs() -> None:
    assert [t.slug for t in losses(2).sub_tasks] == [
        "prepare-losses-generation-params",
        "prepare-losses-generation-directory",
        "generate-losses-chunk-1",
        "generate-losses-chunk-2",
        "generate-losses-output",
        "record-losses-files",
        "cleanup",
    ]


@given(st.integers(min_value=1, max_value=500))
def test_counts_and_chunk_numbers(chunks: int) -> None:
    for plan, extra in ((input_generation(chunks), 5), (losses(chunks), 5)):
        assert len(plan.sub_tasks) == chunks + extra
        assert [t.chunk for t in plan.chunks] == list(range(1, chunks + 1))
        assert len({t.slug for t in plan.sub_tasks}) == len(plan.sub_tasks)
        assert plan.last.slug == "cleanup"


def test_a_stage_needs_a_chunk() -> None:
    with pytest.raises(ValueError, match="at least one chunk"):
        losses(0)
