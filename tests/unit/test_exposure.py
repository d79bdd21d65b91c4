"""The exposure check's model facts: the coverage types a model declares, oasislmf's TIV columns."""

from __future__ import annotations

from typing import Any

import pytest

from worker.demo_model import COVERAGE_TYPES, model_settings
from worker.exposure import keyed_coverage_types, tiv_columns

DECLARED: list[tuple[dict[str, Any] | None, tuple[int, ...] | None]] = [
    (None, None),
    ({}, None),
    ({"lookup_settings": {"supported_perils": []}}, None),
    ({"lookup_settings": {"supported_coverage_types": [1, 3]}}, (1, 3)),
    ({"lookup_settings": {"supported_coverage_types": []}}, None),
    ({"lookup_settings": {"supported_coverage_types": [1, "3"]}}, None),
    ({"lookup_settings": {"supported_coverage_types": [True]}}, None),
    ({"lookup_settings": ["supported_coverage_types"]}, None),
]


@pytest.mark.parametrize(
    ("settings", "types"),
    DECLARED,
    ids=["none", "empty", "no key", "declared", "empty list", "text", "bool", "not a map"],
)
def test_keyed_coverage_types(
    settings: dict[str, Any] | None, types: tuple[int, ...] | None
) -> None:
    assert keyed_coverage_types(settings) == types


def test_tiv_columns_are_oasislmfs_and_the_demo_declares_its_lookups_types() -> None:
    columns = tiv_columns()
    assert {c: columns[c] for c in (1, 2, 3, 4)} == {
        1: "BuildingTIV",
        2: "OtherTIV",
        3: "ContentsTIV",
        4: "BITIV",
    }
    assert keyed_coverage_types(model_settings()) == COVERAGE_TYPES
