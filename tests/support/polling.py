"""Waiting for a state in tests: poll a check with a deadline, never sleep for a guessed time."""

from __future__ import annotations

import time
from collections.abc import Callable

INTERVAL = 0.05


def poll(
    check: Callable[[], bool],
    what: str,
    deadline: float = 60.0,
    *,
    ignoring: tuple[type[BaseException], ...] = (),
) -> None:
    """Return once `check()` holds; fail naming `what` after `deadline` seconds. An exception of
    a type in `ignoring` (a call failing while the state settles) counts as not yet, and the last
    one is named in the failure."""
    stop = time.monotonic() + deadline
    last: BaseException | None = None
    while True:
        try:
            if check():
                return
        except ignoring as error:
            last = error
        if time.monotonic() > stop:
            break
        time.sleep(INTERVAL)  # polling with a deadline
    raise AssertionError(
        f"{what}: not within {deadline:g} s" + (f" (last error: {last})" if last else "")
    )
