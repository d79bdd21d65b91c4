"""Reading and updating the stored configurations with their owners' models."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from api.errors import ApiError, field_errors
from worker.chunking import effective_configuration
from worker.configuration import ChunkingConfiguration

log = logging.getLogger(__name__)
C = TypeVar("C", bound=BaseModel)


def stored(kind: type[C], value: Any, owner: str) -> C:
    """A stored configuration, typed; fields of a bad stored value fall back to their defaults."""
    data = value if isinstance(value, dict) else {}
    try:
        return kind.model_validate(data)
    except ValidationError as exc:
        bad = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
        log.warning(
            "%s: stored %s has bad fields %s; using defaults for them",
            owner,
            kind.__name__,
            sorted(bad),
        )
    try:
        return kind.model_validate({k: v for k, v in data.items() if k not in bad})
    except ValidationError:
        return kind()


def merge(current: C, update: BaseModel) -> C:
    """`update`'s given fields over `current`, validated whole; 400 naming each bad field."""
    return merge_fields(current, update.model_dump(exclude_unset=True))


def merge_fields(current: C, changes: dict[str, Any]) -> C:
    try:
        return type(current).model_validate({**current.model_dump(), **changes})
    except ValidationError as exc:
        raise ApiError(400, field_errors(exc)) from None


def stored_chunking(model: Any, override: Any, owner: str) -> ChunkingConfiguration:
    """An analysis's effective chunking from the stored model configuration and the stored
    override (only the fields the override sets act), each read safely with `stored`."""
    typed_override = stored(ChunkingConfiguration, override, owner)
    return effective_configuration(
        stored(ChunkingConfiguration, model, owner),
        typed_override.model_dump(include=set(override or {})),
    )
