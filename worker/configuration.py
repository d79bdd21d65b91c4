"""The typed `chunking_configuration` of a model or an analysis: one statement of its shape.

Field names, defaults and enum spellings follow the OasisPlatform v2 API. Every field has a
default, so the same model validates a whole configuration and a partial one (an analysis
override, or an update merged onto stored values).
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict

# The API's rule for every count of a configuration (whole numbers within int32), stated once.
from scaler.configuration import PositiveCount


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
