"""What the exporter knows of the platform: the models and the last good snapshot.

The websocket loop, the REST resync and the models refresh write it from their threads; the
collector reads a consistent copy (`View`) on every scrape. A refused message or a failed call
changes nothing here but the counters: the last good snapshot stays, and its age grows.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from api.exporter.snapshot import Snapshot
from scaler.configuration import ScalingConfiguration


class Channel(StrEnum):
    WEBSOCKET = "websocket"
    REST = "rest"


@dataclass(frozen=True)
class PlatformModel:
    """A model of the platform, named by its queue (the `model` label)."""

    id: int
    queue: str
    scaling: ScalingConfiguration


def model_queue(model: Mapping[str, object]) -> str:
    """The queue a model's workers consume, as the platform names it: `<supplier>-<model>-
    <version>`, with `-v2` for a model whose run_mode is V2. A `queue_name` field (our own API
    sends one) is taken as it is."""
    named = model.get("queue_name")
    if isinstance(named, str) and named:
        return named
    base = f"{model['supplier_id']}-{model['model_id']}-{model['version_id']}"
    run_mode = model.get("run_mode")
    return f"{base}-v2" if isinstance(run_mode, str) and run_mode.upper() == "V2" else base


@dataclass(frozen=True)
class View:
    """A copy of the state for one scrape."""

    # Lower-cased queue -> model; None until the models were read once.
    models: Mapping[str, PlatformModel] | None
    snapshot: Snapshot | None
    # Seconds since the last good snapshot was taken (None: none yet).
    age: float | None
    websocket_connected: bool
    platform_up: bool
    snapshots: Mapping[Channel, int]
    refused: Mapping[Channel, int]
    # Websocket connections opened (accepted by the platform).
    connections: int


@dataclass
class ExporterState:
    clock: Callable[[], float] = time.monotonic
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _models: dict[str, PlatformModel] | None = None
    _snapshot: Snapshot | None = None
    _taken_at: float | None = None
    _websocket_connected: bool = False
    _platform_up: bool = False
    _snapshots: Counter[Channel] = field(default_factory=Counter)
    _refused: Counter[Channel] = field(default_factory=Counter)
    _connections: int = 0

    def offer(self, snapshot: Snapshot, channel: Channel) -> bool:
        """Keep `snapshot`, True when kept. Pushes arrive in order on one connection and are
        always kept; a REST answer is dropped when the platform built the snapshot held later
        (a slow resync arriving after a newer push)."""
        with self._lock:
            held = self._snapshot
            if channel is Channel.REST and held is not None and _older(snapshot, held):
                return False
            self._snapshot = snapshot
            self._taken_at = self.clock()
            self._snapshots[channel] += 1
            return True

    def refuse(self, channel: Channel) -> None:
        with self._lock:
            self._refused[channel] += 1

    def set_models(self, models: Mapping[str, PlatformModel]) -> None:
        with self._lock:
            self._models = {queue.lower(): model for queue, model in models.items()}

    def models(self) -> Mapping[str, PlatformModel] | None:
        with self._lock:
            return None if self._models is None else dict(self._models)

    def set_websocket(self, *, connected: bool) -> None:
        with self._lock:
            if connected and not self._websocket_connected:
                self._connections += 1
            self._websocket_connected = connected

    def set_platform_up(self, *, up: bool) -> None:
        with self._lock:
            self._platform_up = up

    def view(self) -> View:
        with self._lock:
            age = None if self._taken_at is None else max(0.0, self.clock() - self._taken_at)
            return View(
                # Replaced whole by set_models, never changed in place: shared, not copied.
                models=self._models,
                snapshot=self._snapshot,
                age=age,
                websocket_connected=self._websocket_connected,
                platform_up=self._platform_up,
                snapshots=dict(self._snapshots),
                refused=dict(self._refused),
                connections=self._connections,
            )


def _older(new: Snapshot, held: Snapshot) -> bool:
    if new.time is None or held.time is None:
        return False
    try:
        return new.time < held.time
    except TypeError:  # one with a time zone, one without: not comparable, keep the new one
        return False
