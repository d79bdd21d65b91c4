"""A new worker takes no sub-task until its pool processes are warm (worker/warm_gate.py): real
Redis and real `oasis-autoscaler worker`s, whose warm kernels load this machine's numba cache.

The sub-task is queued before the worker starts, so a worker fetching at once would receive it
within a second of starting, long before its warm processes are up. Its log tells the order:
each warm process prints `zygote: ... tools warm` when it is ready, the gate says when it opens,
and Celery says when it received the sub-task.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from celery import Celery
from redis import Redis

from tests.support.numba import numba_cache_root
from tests.support.polling import poll
from tests.support.servers import worker_server
from worker.messages import GENERATE_INPUTS_TASK
from worker.presence import live_workers

pytestmark = pytest.mark.integration
RECEIVED = "] received"
WARM_PROCESS = "tools warm"
OPENED = "pool processes warm after"


def two_process_worker(
    tmp_path: Path, redis_url: str, queue: str, env: dict[str, str]
) -> AbstractContextManager[object]:
    """A worker of 2 pool processes on `queue`, logging to `tmp_path / "worker.log"`."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    return worker_server(
        data_dir,
        redis_url=redis_url,
        queue=queue,
        numba_cache_dir=numba_cache_root(),
        concurrency=2,
        env=env,
        log_path=tmp_path / "worker.log",
    )


def run_one(tmp_path: Path, redis_url: str, queue: str, env: dict[str, str]) -> str:
    """Queue one sub-task, start a worker of 2 pool processes, and return its log once the
    sub-task was received."""
    Celery(broker=redis_url).send_task(GENERATE_INPUTS_TASK, args=[1], queue=queue)
    log = tmp_path / "worker.log"
    with two_process_worker(tmp_path, redis_url, queue, env):
        poll(lambda: RECEIVED in log.read_text(), "the sub-task received", deadline=120)
    return log.read_text()


def test_a_new_worker_takes_work_only_once_its_pool_processes_are_warm(
    tmp_path: Path, redis_url: str
) -> None:
    text = run_one(tmp_path, redis_url, "warm-gate-1", {})
    received = text.index(RECEIVED)
    opened = text.index(OPENED)
    assert opened < received
    assert text.count(WARM_PROCESS, 0, received) == 2


def test_a_warm_up_that_takes_too_long_does_not_keep_the_worker_from_work(
    tmp_path: Path, redis_url: str
) -> None:
    """Importing oasislmf alone takes over a second: with 10 ms to warm, the worker gives up
    waiting, says so, and takes the sub-task."""
    env = {"OASIS_AUTOSCALER_WARM_UP_WAIT_SECONDS": "0.01"}
    text = run_one(tmp_path, redis_url, "warm-gate-2", env)
    assert text.index("0 of 2 pool processes warm after") < text.index(RECEIVED)


def test_a_warming_worker_says_so_in_its_presence_until_its_gate_opens(
    tmp_path: Path, redis_url: str, redis: Redis
) -> None:
    """The record says `warming` from the worker's registration until its gate opens, and says
    it no longer at once: not at the next refresh, a minute away here."""
    queue, log = "warm-gate-3", tmp_path / "worker.log"
    env = {
        "OASIS_AUTOSCALER_PRESENCE_TTL_SECONDS": "120",
        "OASIS_AUTOSCALER_PRESENCE_REFRESH_SECONDS": "60",
    }
    with two_process_worker(tmp_path, redis_url, queue, env):
        # Registered as Celery is ready; its pool processes then warm for seconds more (each
        # imports oasislmf, over a second alone), so the gate is still closed here.
        poll(lambda: bool(live_workers(redis, queue)), "the worker registered", deadline=30)
        assert live_workers(redis, queue)[0].warming, log.read_text()[-2000:]
        poll(lambda: OPENED in log.read_text(), "the gate opened", deadline=120)
        poll(lambda: not live_workers(redis, queue)[0].warming, "the record warm", deadline=5)
