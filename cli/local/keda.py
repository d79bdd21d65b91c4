"""A local stand-in for KEDA: each model's ScaledObject, driven against the real scaler over gRPC.

For every model it holds a `ScaledObjectModel` (cli.keda.timing: what KEDA and the HPA do
with our ScaledObject), asks the scaler as KEDA does when a poll or HPA sync is due, keeps a
StreamIsActive open for push activation (reconnecting with KEDA's back-off), and sizes the
model's pool of real worker processes to the replica count.

A failed round of calls changes nothing, as in KEDA without a fallback: the HPA keeps the
replicas it has. Any other failure of a model's round (the workers' presence in Redis, starting a
worker) is shown on the model and the round is tried again with back-off (`cli.local.backoff`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import grpc

from cli.keda.client import KedaClient
from cli.keda.timing import KedaTiming, ScaledObjectModel
from cli.local.backoff import Backoff
from cli.local.pool import PoolCounts, WorkerPool

log = logging.getLogger(__name__)

# KEDA's reconnect back-off for a push stream: 2 s doubling up to a minute.
STREAM_BACKOFF_FIRST, STREAM_BACKOFF_MAX = 2.0, 60.0
TICK_SECONDS = 0.1


@dataclass
class ModelScaling:
    """What the stand-in shows of one model."""

    replicas: int = 0
    metric: float = 0.0
    active: bool = False
    error: str = ""
    pushes: int = 0
    # Its workers as the pool last counted them.
    workers: PoolCounts = field(default_factory=PoolCounts)


@dataclass
class KedaStandIn:
    client: KedaClient
    pool: WorkerPool
    timing: KedaTiming
    _objects: dict[str, ScaledObjectModel] = field(default_factory=dict)
    _shown: dict[str, ModelScaling] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _wake: threading.Event = field(default_factory=threading.Event)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _backoffs: dict[str, Backoff] = field(default_factory=dict)
    _loop: asyncio.AbstractEventLoop | None = None

    def add(self, model: str) -> None:
        """Create the model's ScaledObject (as `kubectl apply` would) and its push stream."""
        with self._lock:
            if model in self._objects:
                return
            self._objects[model] = ScaledObjectModel(self.timing)
            self._shown[model] = ModelScaling()
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._follow_stream(model), self._loop)

    def start(self) -> None:
        """The polling thread, and one thread whose event loop holds every model's push stream
        (a thousand models are a thousand streams, not a thousand threads)."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._spawn("keda-push-streams", loop.run_forever)
        for model in self._models():
            asyncio.run_coroutine_threadsafe(self._follow_stream(model), loop)
        self._spawn("keda-stand-in", self._run)

    def stop(self) -> None:
        """The polling thread ends first, so no call goes to a closed channel; then the
        streams, their loop, and the channels."""
        self._stopping.set()
        self._wake.set()
        for thread in self._threads:
            if thread.name == "keda-stand-in":
                thread.join(timeout=5)
        if self._loop is not None:
            loop = self._loop
            with contextlib.suppress(Exception):  # the loop may have ended already
                asyncio.run_coroutine_threadsafe(self._end_streams(), loop).result(timeout=5)
            loop.call_soon_threadsafe(loop.stop)
        self.client.close()
        for thread in self._threads:
            thread.join(timeout=5)

    async def _end_streams(self) -> None:
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.client.close_pushes()

    def scaling(self) -> dict[str, ModelScaling]:
        with self._lock:
            return {model: replace(shown) for model, shown in self._shown.items()}

    def _spawn(self, name: str, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self.round()
            self._wake.wait(TICK_SECONDS)
            self._wake.clear()

    def round(self, now: float | None = None) -> None:
        """One round over the models: poll the scaler where due, size the pools, count."""
        for model in self._models():
            backoff = self._backoffs.setdefault(model, Backoff())
            if not backoff.due(now):
                continue
            try:
                self._poll_if_due(model)
                self.pool.scale(model, self._replicas(model))
                self._count(model)
            except Exception as error:  # one model's trouble stops no other
                backoff.failed(error, now)
                self._trouble(model, backoff)
            else:
                if backoff.failures:
                    backoff.succeeded()
                    with self._lock:
                        self._shown[model].error = ""

    def _trouble(self, model: str, backoff: Backoff) -> None:
        """Show it, and log it when it is new: it is tried again after a back-off."""
        with self._lock:
            shown = self._shown[model]
            new, shown.error = shown.error != backoff.error, backoff.error
        if new:
            log.error("scaling %s failed (tried again with back-off): %s", model, backoff.error)

    def _models(self) -> list[str]:
        with self._lock:
            return sorted(self._objects)

    def _replicas(self, model: str) -> int:
        with self._lock:
            return self._objects[model].replicas

    def _count(self, model: str) -> None:
        counts = self.pool.counts(model)
        with self._lock:
            self._shown[model].workers = counts

    def _poll_if_due(self, model: str) -> None:
        with self._lock:
            due = time.monotonic() >= self._objects[model].next_due
        if not due:
            return
        try:
            answer = self.client.ask(model)
        except grpc.RpcError as error:
            self._failed(model, error)
            return
        with self._lock:
            scaled = self._objects[model]
            replicas = scaled.step(time.monotonic(), active=answer.active, metric=answer.metric)
            shown = self._shown[model]
            shown.replicas, shown.metric, shown.active, shown.error = (
                replicas,
                answer.metric,
                answer.active,
                "",
            )
        log.debug("%s: active=%s metric=%s -> %d", model, answer.active, answer.metric, replicas)

    def _failed(self, model: str, error: grpc.RpcError) -> None:
        with self._lock:
            scaled = self._objects[model]
            # Nothing changes until the next due moment, as the HPA keeps its replicas.
            now = time.monotonic()
            scaled.next_poll = max(scaled.next_poll, now + self.timing.polling_interval)
            scaled.next_sync = max(scaled.next_sync, now + self.timing.hpa_sync_period)
            self._shown[model].error = f"{error.code().name}: {error.details()}"

    async def _follow_stream(self, model: str) -> None:
        backoff = STREAM_BACKOFF_FIRST
        while not self._stopping.is_set():
            try:
                async for active in self.client.pushes(model):
                    backoff = STREAM_BACKOFF_FIRST
                    if active:  # KEDA acts only on `true`
                        self._pushed(model)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # refused, reset, the channel closed: reconnect later
                log.debug("push stream of %s ended: %s", model, error)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, STREAM_BACKOFF_MAX)

    def _pushed(self, model: str) -> None:
        with self._lock:
            self._objects[model].push(time.monotonic())
            self._shown[model].pushes += 1
            self._shown[model].replicas = self._objects[model].replicas
        self._wake.set()
