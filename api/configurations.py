"""Updating the stored configurations with their owners' models (reading: api/store/)."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from api.errors import ApiError, field_errors

C = TypeVar("C", bound=BaseModel)


def merge(current: C, update: BaseModel) -> C:
    """`update`'s given fields over `current`, validated whole; 400 naming each bad field."""
    return merge_fields(current, update.model_dump(exclude_unset=True))


def merge_fields(current: C, changes: dict[str, Any]) -> C:
    try:
        return type(current).model_validate({**current.model_dump(), **changes})
    except ValidationError as exc:
        raise ApiError(400, field_errors(exc)) from None
