"""A call of the local stack that may fail, tried again with back-off, its trouble kept to show.

Every call `up` makes to its own services (the API's token and models, its metrics for the view,
the scaler over gRPC, Redis for the workers' presence) can fail: refused while a service restarts,
timed out while the machine is loaded, a 5xx, an answer that is not JSON. None of these ends the
stack: the call's `Backoff` records the failure as text to show, and says when to try again:
1 s, doubling, at most 30 s; the first success clears it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar

FIRST_SECONDS: Final = 1.0
MOST_SECONDS: Final = 30.0
# A shown error is one line of at most this many characters.
SHOWN_CHARACTERS: Final = 160

T = TypeVar("T")


@dataclass
class Backoff:
    """The state of one repeated call: how often it failed in a row, why, and when it is due."""

    first: float = FIRST_SECONDS
    most: float = MOST_SECONDS
    failures: int = 0
    error: str = ""
    next_try: float = 0.0

    def due(self, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) >= self.next_try

    def failed(self, error: BaseException, now: float | None = None) -> float:
        """Record the failure; return the seconds until the next try."""
        self.failures += 1
        delay = min(self.first * 2.0 ** (self.failures - 1), self.most)
        self.next_try = (time.monotonic() if now is None else now) + delay
        self.error = describe(error)
        return delay

    def succeeded(self) -> None:
        self.failures, self.error, self.next_try = 0, "", 0.0

    def attempt(self, call: Callable[[], T], now: float | None = None) -> T | None:
        """`call()` when due: its answer, or None when it is not due or failed (recorded)."""
        if not self.due(now):
            return None
        try:
            answer = call()
        except Exception as error:  # any failure is a state to show, never the stack's end
            self.failed(error, now)
            return None
        self.succeeded()
        return answer

    def shown(self, what: str, now: float | None = None) -> str:
        """`what: <error> (failed N times, next try in S s)`, or "" when it works."""
        if not self.error:
            return ""
        wait = max(0.0, self.next_try - (time.monotonic() if now is None else now))
        return f"{what}: {self.error} (failed {self.failures}x, next try in {wait:.0f} s)"


def describe(error: BaseException) -> str:
    """The error as one short line: its type and the first line of its message."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return text if len(text) <= SHOWN_CHARACTERS else text[: SHOWN_CHARACTERS - 3] + "..."
