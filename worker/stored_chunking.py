"""An analysis's effective chunking, read from what the database stores for it and its model."""

from __future__ import annotations

from typing import Any

from api.store.configurations import stored
from worker.chunking import effective_configuration
from worker.configuration import ChunkingConfiguration


def stored_chunking(model: Any, override: Any, owner: str) -> ChunkingConfiguration:
    """An analysis's effective chunking from the stored model configuration and the stored
    override (only the fields the override sets act), each read safely with `stored`."""
    typed_override = stored(ChunkingConfiguration, override, owner)
    return effective_configuration(
        stored(ChunkingConfiguration, model, owner),
        typed_override.model_dump(include=set(override or {})),
    )
