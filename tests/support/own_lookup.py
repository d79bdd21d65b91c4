"""A model's own lookup class, for the lookup tests: oasislmf's built-in lookup under another
name, counting how often it is built."""

from __future__ import annotations

from typing import Any

from oasislmf.lookup.builtin import Lookup  # type: ignore[import-untyped]


class OwnLookup(Lookup):  # type: ignore[misc]
    built = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        type(self).built += 1
        super().__init__(*args, **kwargs)
