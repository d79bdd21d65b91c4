"""Search filters as OasisPlatform's: `field` matches exactly ignoring case, `field__contains`
is a case-insensitive substring, `field__in` a comma-separated list."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import Select, func

from api.errors import bad_request

T = TypeVar("T")


def apply_filters(
    statement: Select[T], table: Any, query: BaseModel, columns: dict[str, str] | None = None
) -> Select[T]:
    """Add a WHERE clause for each filter set in `query`; `columns` renames filter to column."""
    for name, value in query.model_dump(exclude_none=True).items():
        field, _, operator = name.partition("__")
        column = getattr(table, (columns or {}).get(field, field))
        if operator == "contains":
            statement = statement.where(
                func.lower(column).contains(str(value).lower(), autoescape=True)
            )
        elif operator == "in":
            statement = statement.where(column.in_(_listed(name, column, str(value))))
        elif isinstance(value, str):
            statement = statement.where(func.lower(column) == value.lower())
        else:
            statement = statement.where(column == value)
    return statement


def _listed(name: str, column: Any, value: str) -> list[Any]:
    kind = column.type.python_type
    try:
        return [kind(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError:
        raise bad_request(
            name, f"Must be a comma-separated list of {kind.__name__} values."
        ) from None
