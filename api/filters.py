"""Search filters as OasisPlatform's: `field` matches exactly ignoring case, `field__contains`
is a case-insensitive substring, `field__in` a comma-separated list."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import Select, false, func

from api.errors import bad_request
from scaler.configuration import INT32_MAX

T = TypeVar("T")


def apply_filters(
    statement: Select[T], table: Any, query: BaseModel, columns: dict[str, str] | None = None
) -> Select[T]:
    """Add a WHERE clause for each filter set in `query`; `columns` renames filter to column."""
    for name, value in query.model_dump(exclude_none=True).items():
        field, _, operator = name.partition("__")
        column = getattr(table, (columns or {}).get(field, field))
        if operator == "in":
            statement = statement.where(column.in_(_listed(name, column, str(value))))
        elif not _storable(value):
            statement = statement.where(false())
        elif operator == "contains":
            statement = statement.where(
                func.lower(column).contains(str(value).lower(), autoescape=True)
            )
        elif isinstance(value, str):
            statement = statement.where(func.lower(column) == value.lower())
        else:
            statement = statement.where(column == value)
    return statement


def _listed(name: str, column: Any, value: str) -> list[Any]:
    kind = column.type.python_type
    try:
        values = [kind(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError:
        raise bad_request(
            name, f"Must be a comma-separated list of {kind.__name__} values."
        ) from None
    return [v for v in values if _storable(v)]


def _storable(value: Any) -> bool:
    """Whether a column could hold `value`. One that it could not matches no row; it is not sent
    to the database, as PostgreSQL refuses it (text with a NUL, an integer beyond int32)."""
    if isinstance(value, str):
        return "\x00" not in value
    if isinstance(value, int):
        return abs(value) <= INT32_MAX
    return True
