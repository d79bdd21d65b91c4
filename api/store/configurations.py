"""Stored configurations read with their owners' models, safely: a bad stored value never fails a
read (the API refuses bad ones, but a database can hold anything)."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

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
