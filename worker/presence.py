"""Which workers are alive, on which queue, and whether they are running a task: in Redis.

Celery's own view of its workers (inspect, gossip) needs a broadcast and a wait for replies,
and gossip is off here; the API and the scaler need a cheap read instead. So each worker keeps
one hash in the broker's Redis, `oasis:workers:<node>` (PREFIX), with a TTL: the main process
writes it when Celery is ready, a daemon thread refreshes it, and it is deleted at shutdown. A
worker killed with SIGKILL stops refreshing it, and it expires.

Fields: `node` (the Celery node name), `pid` (the main process), `queue`, `slots` (tasks it runs
at once: its --concurrency; a record without it counts 1), `warming` ("1" while the worker
fetches nothing yet because its pool processes are warming, worker/warm_gate.py; written by the
main process only, whose gate it is; a record without it is not warming), `idle_since` (unix
time the last task ended, or the registration), and one `busy:<pool pid>` per pool process
running a task, valued with the unix time the task started. A worker is busy while any `busy:`
field is there; `since` is then the earliest of those starts, else `idle_since`. The pool
processes write their own `busy:` field (task_prerun/task_postrun, which also fires when a
task fails or retries); a pool process killed mid-task (a revoke with terminate, the OOM killer)
leaves its field behind, and the main process's refresh removes the fields of pool processes
that are gone.

Every write carries the identity fields and the TTL, so a record that expired while its worker
was busy comes back whole, never as a hash without a TTL.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from celery.signals import task_postrun, task_prerun, worker_ready, worker_shutdown
from redis import Redis
from redis.typing import EncodableT, FieldT

log = logging.getLogger(__name__)

PREFIX = "oasis:workers:"
NODE, PID, QUEUE, IDLE_SINCE, SLOTS = "node", "pid", "queue", "idle_since", "slots"
WARMING = "warming"
BUSY_PREFIX = "busy:"
Fields = dict[FieldT, EncodableT]
# SCAN's COUNT: one round trip reads the keys of this many workers.
SCAN_COUNT = 10_000


@dataclass(frozen=True)
class WorkerPresence:
    node: str  # Celery node name
    pid: int  # the worker's main process id (the process `oasis-autoscaler worker` runs in)
    queue: str
    busy: bool
    since: float  # unix time of the last busy/idle change
    slots: int = 1  # tasks it runs at once (its --concurrency)
    warming: bool = False  # up, but fetching nothing until its pool processes are warm


def key(node: str) -> str:
    return f"{PREFIX}{node}"


def live_workers(redis: Redis, queue: str | None = None) -> list[WorkerPresence]:
    """The workers whose record is alive, of `queue` or of every queue, sorted by node.

    Raises redis errors (the caller decides what an unreachable Redis means); a malformed
    record is logged and skipped.
    """
    keys = list(redis.scan_iter(match=f"{PREFIX}*", count=SCAN_COUNT))
    if not keys:
        return []
    with redis.pipeline(transaction=False) as pipe:
        for name in keys:
            pipe.hgetall(name)
        # An error in place of a hash (a key of another type) is a malformed record too.
        hashes: list[Mapping[Any, Any] | Exception] = pipe.execute(raise_on_error=False)
    workers = []
    for name, fields in zip(keys, hashes, strict=True):
        if not fields:  # expired between the SCAN and the HGETALL
            continue
        worker = None if isinstance(fields, Exception) else parse(fields)
        if worker is None:
            log.warning("skipping the malformed worker record %r: %r", name, fields)
        elif queue is None or worker.queue == queue:
            workers.append(worker)
    return sorted(workers, key=lambda w: w.node)


def parse(fields: Mapping[Any, Any]) -> WorkerPresence | None:
    """The worker a record describes; None if it is not one this module wrote."""
    try:
        text = {_text(k): _text(v) for k, v in fields.items()}
        starts = [float(v) for k, v in text.items() if k.startswith(BUSY_PREFIX)]
        node, queue = text[NODE], text[QUEUE]
        pid = int(text[PID])
        since = min(starts) if starts else float(text[IDLE_SINCE])
        slots = int(text.get(SLOTS, "1"))
    except (KeyError, ValueError, UnicodeDecodeError):
        return None
    if not node or not queue or slots < 1:
        return None
    return WorkerPresence(
        node=node,
        pid=pid,
        queue=queue,
        busy=bool(starts),
        since=since,
        slots=slots,
        warming=text.get(WARMING) == "1",
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Presence:
    """One worker's record: written by its main process and by its pool processes."""

    def __init__(
        self,
        redis: Redis,
        *,
        node: str,
        queue: str,
        ttl_seconds: float,
        refresh_seconds: float,
        slots: int = 1,
        is_warming: Callable[[], bool] | None = None,
    ) -> None:
        self.redis = redis
        self.node = node
        self.queue = queue
        self.slots = slots
        # Whether the worker still fetches nothing (its warm gate): asked in the main process.
        self.is_warming = is_warming
        self.pid = os.getpid()
        self.ttl_ms = max(1, round(ttl_seconds * 1000))
        self.refresh_seconds = refresh_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        # One refresh at a time, so that one reading the warm gate before it opened never
        # writes after the refresh that says it opened.
        self._refreshing = threading.Lock()

    @property
    def key(self) -> str:
        return key(self.node)

    def _identity(self) -> Fields:
        return {NODE: self.node, PID: str(self.pid), QUEUE: self.queue, SLOTS: str(self.slots)}

    # The main process.

    def start(self) -> None:
        """Register now, then refresh from a daemon thread until `stop`."""
        self._started = True
        self.refresh()
        self._thread = threading.Thread(target=self._refresh_loop, name="presence", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.refresh_seconds + 5)
        # After any refresh under way (the warm gate's may come from another thread), and none
        # after it: a record written back now would be a worker that has gone.
        with self._refreshing:
            try:
                self.redis.delete(self.key)
            except Exception:  # the record expires by itself
                log.warning("could not remove the worker record %s", self.key, exc_info=True)

    def warmed(self) -> None:
        """The warm gate opened: say so now, not at the next refresh (once registered)."""
        if self._started:
            self.refresh()

    def refresh(self) -> None:
        """Rewrite the identity, whether the worker is warming, and the TTL; drop the busy marks
        of pool processes that are gone. Never raises: a worker keeps working while Redis is
        away."""
        with self._refreshing:
            if not self._stop.is_set():
                self._refresh()

    def _refresh(self) -> None:
        try:
            warming = self.is_warming is not None and self.is_warming()
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.hset(self.key, mapping={**self._identity(), WARMING: "1" if warming else "0"})
                pipe.hsetnx(self.key, IDLE_SINCE, repr(time.time()))
                pipe.pexpire(self.key, self.ttl_ms)
                pipe.hkeys(self.key)
                fields = pipe.execute()[-1]
            gone = [f for f in map(_text, fields) if _dead_busy_mark(f)]
            if gone:
                self._write_idle(gone)
        except Exception:
            log.warning("could not refresh the worker record %s", self.key, exc_info=True)

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            self.refresh()

    # A pool process (or the main one with a solo pool).

    def mark_busy(self) -> None:
        self._write({**self._identity(), f"{BUSY_PREFIX}{os.getpid()}": repr(time.time())})

    def mark_idle(self) -> None:
        self._write_idle([f"{BUSY_PREFIX}{os.getpid()}"])

    def _write_idle(self, busy_fields: list[str]) -> None:
        self._write({**self._identity(), IDLE_SINCE: repr(time.time())}, remove=busy_fields)

    def _write(self, mapping: Fields, remove: list[str] | None = None) -> None:
        try:
            with self.redis.pipeline(transaction=True) as pipe:
                if remove:
                    pipe.hdel(self.key, *remove)
                pipe.hset(self.key, mapping=mapping)
                pipe.pexpire(self.key, self.ttl_ms)
                pipe.execute()
        except Exception:  # presence is best effort: a task never fails for it
            log.warning("could not update the worker record %s", self.key, exc_info=True)


def _dead_busy_mark(field: str) -> bool:
    if not field.startswith(BUSY_PREFIX):
        return False
    try:
        pid = int(field.removeprefix(BUSY_PREFIX))
    except ValueError:
        return True
    return not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_presence: Presence | None = None


def install(presence: Presence) -> None:
    """Keep `presence` up to date from Celery's signals. Called in the worker's main process
    before Celery starts: the pool processes it forks inherit the handlers."""
    global _presence
    _presence = presence
    worker_ready.connect(_on_ready, weak=False)
    worker_shutdown.connect(_on_shutdown, weak=False)
    task_prerun.connect(_on_prerun, weak=False)
    task_postrun.connect(_on_postrun, weak=False)


def _on_ready(**_: Any) -> None:
    if _presence is not None:
        _presence.start()


def _on_shutdown(**_: Any) -> None:
    if _presence is not None:
        _presence.stop()


def _on_prerun(**_: Any) -> None:
    if _presence is not None:
        _presence.mark_busy()


def _on_postrun(**_: Any) -> None:
    if _presence is not None:
        _presence.mark_idle()
