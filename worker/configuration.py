"""The typed `chunking_configuration` of a model or an analysis: one statement of its shape.

Field names, defaults and enum spellings follow the OasisPlatform v2 API. Every field has a
default, so the same model validates a whole configuration and a partial one (an analysis
override, or an update merged onto stored values).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt

INT32_MAX = 2**31 - 1


def whole_number(value: object) -> object:
    """JSON has one kind of number, and to JSON Schema (so to the OpenAPI document) 3.0 is the
    integer 3: take it as 3. 1.5, true, "3" and null are still refused."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


PositiveCount = Annotated[StrictInt, Field(ge=1, le=INT32_MAX), BeforeValidator(whole_number)]


class ChunkingStrategy(StrEnum):
    FIXED_CHUNKS = "FIXED_CHUNKS"
    DYNAMIC_CHUNKS = "DYNAMIC_CHUNKS"


class ChunkingConfiguration(BaseModel):
    """How an analysis stage is cut into sub-tasks; only the chosen strategy's fields act."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lookup_strategy: ChunkingStrategy = ChunkingStrategy.FIXED_CHUNKS
    loss_strategy: ChunkingStrategy = ChunkingStrategy.FIXED_CHUNKS
    dynamic_locations_per_lookup: PositiveCount = 10000
    dynamic_events_per_analysis: PositiveCount = 1
    dynamic_chunks_max: PositiveCount = 200
    fixed_analysis_chunks: PositiveCount = 1
    fixed_lookup_chunks: PositiveCount = 1
