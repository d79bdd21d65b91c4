"""The local stand-in's worker pool with real workers: idle ones stop first, a busy one finishes.

A task is held running by an exclusive lock on the worker's SQLite database, which its first read
waits on (SQLite's busy timeout, 5 s): so one worker is busy while the pool shrinks.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from redis import Redis

from cli.local.pool import WorkerPool
from cli.local.supervisor import Child, Supervisor
from tests.support.busy import database_locked
from tests.support.polling import poll
from worker.messages import GENERATE_INPUTS_TASK
from worker.presence import live_workers

pytestmark = pytest.mark.integration
QUEUE = "pool-model-1"


@pytest.fixture
def pool(tmp_path: Path, redis_url: str, redis: Redis) -> Iterator[WorkerPool]:
    supervisor = Supervisor(tmp_path / "logs")
    env = {
        "OASIS_AUTOSCALER_DATA_DIR": str(tmp_path / "data"),
        "OASIS_AUTOSCALER_REDIS_URL": redis_url,
        "OASIS_AUTOSCALER_NUMBA_CACHE_DIR": str(tmp_path / "numba"),
        "OASIS_AUTOSCALER_PRESENCE_REFRESH_SECONDS": "0.5",
    }
    (tmp_path / "data").mkdir()
    cli = str(Path(sys.executable).with_name("oasis-autoscaler"))
    yield WorkerPool(
        supervisor,
        command=lambda queue: ([cli, "worker", "--queue", queue], env),
        presence=lambda queue: live_workers(redis, queue),
        grace_seconds=60,
    )
    supervisor.stop_together(list(supervisor.children), grace=30)


def running(pool: WorkerPool) -> list[Child]:
    return [c for c in pool.supervisor.children if c.stopping_since is None]


def test_shrinking_stops_idle_workers_first_and_a_busy_one_finishes_its_task(
    pool: WorkerPool, redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    pool.scale(QUEUE, 3)
    assert pool.counts(QUEUE).running == 3
    poll(lambda: len(live_workers(redis, QUEUE)) == 3, "three workers registered")
    with database_locked(tmp_path / "data"):
        Celery(broker=redis_url).send_task(GENERATE_INPUTS_TASK, args=[1], queue=QUEUE)
        poll(lambda: pool.counts(QUEUE).busy == 1, "one worker busy")
        (busy,) = [w.pid for w in live_workers(redis, QUEUE) if w.busy]
        pool.scale(QUEUE, 1)
        assert [c.process.pid for c in running(pool)] == [busy], "an idle worker was kept"
        assert pool.counts(QUEUE).stopping == 2
        # Down to zero while it works: it is asked to stop, and stays to finish its task.
        pool.scale(QUEUE, 0)
        (victim,) = [c for c in pool.supervisor.children if c.process.pid == busy]
        assert victim.stopping_since is not None and victim.running
    poll(lambda: not victim.running, "the busy worker to finish and exit", deadline=30)
    assert victim.process.returncode == 0
    log = victim.log.read_text()
    assert "Warm shutdown" in log and "generate_inputs" in log
    poll(lambda: live_workers(redis, QUEUE) == [], "every record gone")
    poll(lambda: _settled(pool), "every stopped worker reaped", deadline=30)
    assert pool.supervisor.children == []


def _settled(pool: WorkerPool) -> bool:
    pool.scale(QUEUE, 0)  # reaps the workers that exited
    return pool.counts(QUEUE).stopping == 0


def test_workers_not_registered_yet_go_before_registered_idle_ones(
    pool: WorkerPool, redis: Redis
) -> None:
    pool.scale(QUEUE, 1)
    poll(lambda: len(live_workers(redis, QUEUE)) == 1, "the first worker registered")
    (first,) = running(pool)
    pool.scale(QUEUE, 2)  # the second is still starting: like a pod not ready
    pool.scale(QUEUE, 1)
    assert running(pool) == [first]
