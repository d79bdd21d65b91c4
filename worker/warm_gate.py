"""A new worker takes no sub-task until its pool processes are warm.

A pool process's first kernel step waits for its warm process (worker/warm_kernel.py) and pays
its first import of oasislmf: seconds, more on a busy machine, where a warm worker runs a short
chunk in well under a second. So a worker started while chunks wait would take one and hold it
through its warm-up while the workers already warm could have run it, and the stage would end
later for the scale-up. Instead each pool process warms as it starts (on a thread, so Celery
sees it up at once), and the worker fetches nothing until every one of them is warm, or until
`wait_seconds` have passed: a warm-up that fails or stalls never stops a worker taking work.

The gate is kombu's own: the Redis transport asks the channel's QoS `can_consume()` before each
fetch, and again on every turn of the event loop (Celery's `worker_disable_prefetch` holds its
fetches the same way).
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from multiprocessing.synchronize import Semaphore
from typing import Any

from celery import Celery, bootsteps

log = logging.getLogger(__name__)

# Released once by each pool process when it is warm. Made in the worker's main process before
# Celery forks its pool, so every pool process shares it.
_warmed: Semaphore | None = None
_open = threading.Event()
_waiting: threading.Thread | None = None
_pool_size = 1
_wait_seconds = 0.0
_on_open: Callable[[], object] | None = None


def install(
    app: Celery,
    pool_size: int,
    wait_seconds: float,
    on_open: Callable[[], object] | None = None,
) -> None:
    """Hold the worker's fetches until its `pool_size` pool processes are warm, for at most
    `wait_seconds` (0: no hold), and call `on_open` when the hold ends (never without a hold).
    Called in the worker's main process before Celery starts."""
    global _warmed, _pool_size, _wait_seconds, _on_open
    if wait_seconds <= 0:
        return
    _warmed = multiprocessing.get_context("fork").Semaphore(0)
    _pool_size, _wait_seconds, _on_open = pool_size, wait_seconds, on_open
    app.steps["consumer"].add(HoldUntilWarm)


def holding() -> bool:
    """Whether this worker still fetches nothing (in its main process, where the gate is)."""
    return _warmed is not None and not _open.is_set()


def warm_pool_process(warm_up: Callable[[], object]) -> None:
    """Run `warm_up` on a thread of this pool process, then say it is warm (whatever came of
    it: a failed warm-up is tried again by the first kernel step, and said in the log)."""
    if _warmed is None:
        return
    warmed = _warmed

    def run() -> None:
        try:
            warm_up()
        except Exception:
            log.warning("warming this pool process failed; its first step warms it", exc_info=True)
        finally:
            warmed.release()

    threading.Thread(target=run, name="warm-up", daemon=True).start()


def _wait_for_pool() -> None:
    assert _warmed is not None
    began = time.monotonic()
    deadline = began + _wait_seconds
    warm = 0
    while warm < _pool_size and _warmed.acquire(timeout=max(deadline - time.monotonic(), 0)):
        warm += 1
    _open.set()
    took = time.monotonic() - began
    if warm < _pool_size:
        log.warning(
            "%d of %d pool processes warm after %.0f s: taking sub-tasks anyway",
            warm,
            _pool_size,
            took,
        )
    else:
        log.info("pool processes warm after %.1f s: taking sub-tasks", took)
    if _on_open is not None:
        _on_open()


class HoldUntilWarm(bootsteps.StartStopStep):  # type: ignore[misc]
    """A consumer step after the task consumer's: its channel fetches only once the gate is open
    (again after every reconnection, which makes a new channel)."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, c: Any) -> None:
        global _waiting
        if _waiting is None:
            _waiting = threading.Thread(target=_wait_for_pool, name="warm-gate", daemon=True)
            _waiting.start()
        qos = c.task_consumer.channel.qos
        can_consume = qos.can_consume
        qos.can_consume = lambda: _open.is_set() and can_consume()
