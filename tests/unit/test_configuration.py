"""Validation of the typed configurations: every bad value of the brief names its field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from scaler.configuration import INT32_MAX, ScalingConfiguration, ScalingStrategy
from worker.configuration import ChunkingConfiguration, ChunkingStrategy

SCALING_INTS = ["worker_count_fixed", "worker_count_max", "worker_count_min", "chunks_per_worker"]
CHUNKING_INTS = [
    "dynamic_locations_per_lookup",
    "dynamic_events_per_analysis",
    "dynamic_chunks_max",
    "fixed_analysis_chunks",
    "fixed_lookup_chunks",
]

# Values that are not integers, as they arrive from JSON.
NOT_INTEGERS = [
    ("true", True),
    ("false", False),
    ("1.5", 1.5),
    ("1.0000001", 1.0000001),
    ("string 3", "3"),
    ("null", None),
    ("list", [3]),
    ("object", {"value": 3}),
]


def bad_fields(model: type[BaseModel], data: Any) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return {".".join(map(str, e["loc"])): e["msg"] for e in caught.value.errors()}


def field_cases(fields: list[str], values: list[tuple[str, Any]]) -> list[Any]:
    return [pytest.param(f, v, id=f"{f}={label}") for f in fields for label, v in values]


@pytest.mark.parametrize(("field", "value"), field_cases(SCALING_INTS, NOT_INTEGERS))
def test_scaling_integers_only(field: str, value: Any) -> None:
    assert "integer" in bad_fields(ScalingConfiguration, {field: value})[field]


@pytest.mark.parametrize(("field", "value"), field_cases(CHUNKING_INTS, NOT_INTEGERS))
def test_chunking_integers_only(field: str, value: Any) -> None:
    assert "integer" in bad_fields(ChunkingConfiguration, {field: value})[field]


@pytest.mark.parametrize(
    ("field", "value"), field_cases(SCALING_INTS, [("-1", -1), ("above int32", INT32_MAX + 1)])
)
def test_scaling_out_of_range(field: str, value: int) -> None:
    data = {field: value}
    if field == "worker_count_min" and value > 0:
        data["worker_count_max"] = INT32_MAX
    message = bad_fields(ScalingConfiguration, data)[field]
    assert ("greater than or equal" in message) or ("less than or equal" in message)


@pytest.mark.parametrize(
    ("field", "value"),
    field_cases(CHUNKING_INTS, [("0", 0), ("-1", -1), ("above int32", INT32_MAX + 1)]),
)
def test_chunking_out_of_range(field: str, value: int) -> None:
    message = bad_fields(ChunkingConfiguration, {field: value})[field]
    assert ("greater than or equal to 1" in message) or ("less than or equal" in message)


def test_chunks_per_worker_must_be_at_least_one() -> None:
    assert (
        "greater than or equal to 1"
        in bad_fields(ScalingConfiguration, {"chunks_per_worker": 0})["chunks_per_worker"]
    )


@pytest.mark.parametrize("field", ["worker_count_fixed", "worker_count_max", "worker_count_min"])
def test_zero_workers_is_allowed(field: str) -> None:
    assert getattr(ScalingConfiguration.model_validate({field: 0}), field) == 0


def test_min_above_max_names_both_fields() -> None:
    errors = bad_fields(ScalingConfiguration, {"worker_count_min": 5, "worker_count_max": 3})
    assert errors == {
        "worker_count_min": "must not be greater than worker_count_max (3)",
        "worker_count_max": "must not be less than worker_count_min (5)",
    }


def test_min_above_the_default_max_is_refused() -> None:
    assert "worker_count_min" in bad_fields(ScalingConfiguration, {"worker_count_min": 11})


def test_a_partial_update_meets_the_stored_value() -> None:
    stored = ScalingConfiguration(worker_count_min=2, worker_count_max=4)
    merged = {**stored.model_dump(), "worker_count_max": 1}
    assert set(bad_fields(ScalingConfiguration, merged)) == {"worker_count_min", "worker_count_max"}


@pytest.mark.parametrize(
    ("model", "field", "value"),
    [
        (ScalingConfiguration, "scaling_strategy", "fixed_workers"),
        (ScalingConfiguration, "scaling_strategy", "FIXED"),
        (ScalingConfiguration, "scaling_strategy", " QUEUE_LOAD"),
        (ScalingConfiguration, "scaling_strategy", None),
        (ScalingConfiguration, "scaling_strategy", 1),
        (ChunkingConfiguration, "lookup_strategy", "Dynamic_Chunks"),
        (ChunkingConfiguration, "loss_strategy", "DYNAMIC_TASKS"),
        (ChunkingConfiguration, "loss_strategy", None),
    ],
)
def test_strategies_exactly_as_spelled(model: type[BaseModel], field: str, value: Any) -> None:
    assert field in bad_fields(model, {field: value})


@pytest.mark.parametrize(
    ("model", "typo"),
    [
        (ScalingConfiguration, "worker_count_mx"),
        (ScalingConfiguration, "Worker_count_max"),
        (ChunkingConfiguration, "fixed_lookup_chunk"),
    ],
)
def test_unknown_fields_are_refused(model: type[BaseModel], typo: str) -> None:
    assert "Extra inputs are not permitted" in bad_fields(model, {typo: 3})[typo]


def test_every_bad_field_is_named_at_once() -> None:
    errors = bad_fields(
        ScalingConfiguration,
        {
            "worker_count_fixed": True,
            "chunks_per_worker": 0,
            "scaling_strategy": "NOPE",
            "extra": 1,
        },
    )
    assert set(errors) == {"worker_count_fixed", "chunks_per_worker", "scaling_strategy", "extra"}


def test_defaults_follow_the_platform() -> None:
    assert ScalingConfiguration().model_dump(mode="json") == {
        "scaling_strategy": "FIXED_WORKERS",
        "worker_count_fixed": 1,
        "worker_count_max": 10,
        "worker_count_min": 0,
        "chunks_per_worker": 10,
    }
    assert ChunkingConfiguration().model_dump(mode="json") == {
        "lookup_strategy": "FIXED_CHUNKS",
        "loss_strategy": "FIXED_CHUNKS",
        "dynamic_locations_per_lookup": 10000,
        "dynamic_events_per_analysis": 1,
        "dynamic_chunks_max": 200,
        "fixed_analysis_chunks": 1,
        "fixed_lookup_chunks": 1,
    }


def test_json_round_trip() -> None:
    config = ScalingConfiguration(scaling_strategy=ScalingStrategy.QUEUE_LOAD, worker_count_max=3)
    assert ScalingConfiguration.model_validate_json(config.model_dump_json()) == config
    text = json.dumps({"loss_strategy": "DYNAMIC_CHUNKS", "dynamic_events_per_analysis": 100})
    chunking = ChunkingConfiguration.model_validate_json(text)
    assert chunking.loss_strategy is ChunkingStrategy.DYNAMIC_CHUNKS


@pytest.mark.parametrize(
    "text",
    [
        '{"worker_count_max": true}',
        '{"worker_count_max": 1.5}',
        '{"worker_count_max": "3"}',
        '{"worker_count_max": null}',
    ],
)
def test_json_text_is_as_strict_as_python_data(text: str) -> None:
    with pytest.raises(ValidationError, match="worker_count_max"):
        ScalingConfiguration.model_validate_json(text)


def test_configurations_are_immutable() -> None:
    config = ScalingConfiguration()
    with pytest.raises(ValidationError):
        config.worker_count_max = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("model", "field"),
    [(ScalingConfiguration, "worker_count_max"), (ChunkingConfiguration, "fixed_lookup_chunks")],
)
def test_an_integral_float_is_the_integer(model: type[BaseModel], field: str) -> None:
    # JSON has one kind of number; JSON Schema (and the OpenAPI document) calls 3.0 an integer.
    assert getattr(model.model_validate({field: 3.0}), field) == 3
    assert getattr(model.model_validate_json(f'{{"{field}": 3.0}}'), field) == 3
    assert "less than or equal" in bad_fields(model, {field: 1e20})[field]
    assert "integer" in bad_fields(model, {field: float("inf")})[field]
