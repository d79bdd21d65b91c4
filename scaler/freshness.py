"""How old the scaler's state is, and whether it may still answer KEDA from it.

The refresh loop records each read of the source here; every call checks `stale_reason` first.
Up to `max_age` after the last good read the last good state answers (a source blip changes
nothing for KEDA); after it, every call fails with UNAVAILABLE, so KEDA's `fallback` replicas
apply instead of an answer frozen at whatever the platform looked like when the source died.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime


@dataclass(frozen=True)
class SourceRecord:
    """What is known of the source's reads. Times are monotonic seconds unless said otherwise."""

    started: float
    last_good: float | None = None
    # Wall clock of the first failure since the last good read (None while the source is fine).
    failing_since: datetime | None = None
    last_error: str | None = None


def age(record: SourceRecord, now: float) -> float:
    """Seconds since the last good read (since start when there was none)."""
    return now - (record.started if record.last_good is None else record.last_good)


def stale_reason(record: SourceRecord, now: float, max_age: float) -> str | None:
    """None while the state may answer; else why not, for the UNAVAILABLE message."""
    if record.last_good is not None and now - record.last_good <= max_age:
        return None
    error = f": {record.last_error}" if record.last_error else ""
    if record.last_good is None:
        if record.failing_since is None:
            return "the scaler has not read the metrics source yet"
        return (
            f"the metrics source has failed since {_utc(record.failing_since)} and the scaler "
            f"has had no good state since it started {age(record, now):.1f} s ago{error}"
        )
    since = _utc(record.failing_since) if record.failing_since else "an unknown time"
    return (
        f"the metrics source has failed since {since}; the last good state is "
        f"{age(record, now):.1f} s old, more than the {max_age:g} s allowed{error}"
    )


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SourceHealth:
    """The thread-safe `SourceRecord` of a running scaler, with its clocks injected for tests."""

    def __init__(
        self,
        max_age: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.max_age = max_age
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._record = SourceRecord(started=clock())

    def succeeded(self) -> None:
        with self._lock:
            self._record = replace(
                self._record, last_good=self._clock(), failing_since=None, last_error=None
            )

    def failed(self, error: str) -> None:
        with self._lock:
            since = self._record.failing_since or self._wall_clock()
            self._record = replace(self._record, failing_since=since, last_error=error)

    @property
    def record(self) -> SourceRecord:
        with self._lock:
            return self._record

    def stale_reason(self) -> str | None:
        return stale_reason(self.record, self._clock(), self.max_age)

    def age(self) -> float:
        return age(self.record, self._clock())
