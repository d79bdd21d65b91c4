"""Worker presence (worker/presence.py) with real Redis and real `oasis-autoscaler worker`s.

A task is held running by an exclusive lock on the worker's SQLite database, which its first read
waits on (up to SQLite's 5 s busy timeout): the test takes the lock, sees the worker busy, and
releases it; the task then fails (the database has no tables), which must mark it idle again.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest
from celery import Celery
from redis import Redis
from redis.typing import EncodableT, FieldT

from tests.support.busy import database_locked
from tests.support.servers import worker_server
from worker import presence
from worker.messages import GENERATE_INPUTS_TASK
from worker.presence import WorkerPresence, live_workers

T = TypeVar("T")
DEADLINE = 30.0


def poll(
    read: Callable[[], T], ok: Callable[[T], bool], what: str, deadline: float = DEADLINE
) -> T:
    stop = time.monotonic() + deadline
    while True:
        value = read()
        if ok(value):
            return value
        if time.monotonic() > stop:
            raise AssertionError(f"{what}: still {value!r} after {deadline} s")
        time.sleep(0.05)  # polling with a deadline


def presence_env(ttl: float, refresh: float) -> dict[str, str]:
    return {
        "OASIS_AUTOSCALER_PRESENCE_TTL_SECONDS": str(ttl),
        "OASIS_AUTOSCALER_PRESENCE_REFRESH_SECONDS": str(refresh),
    }


@contextmanager
def worker(
    tmp_path: Path, redis_url: str, queue: str, env: dict[str, str]
) -> Iterator[tuple[Path, int]]:
    """A worker; yields its data dir and its main process id."""
    data_dir = tmp_path / "data"
    data_dir.mkdir(exist_ok=True)
    with worker_server(
        data_dir,
        redis_url=redis_url,
        queue=queue,
        numba_cache_dir=tmp_path / "numba",
        env=env,
        log_path=tmp_path / f"worker-{queue}-{len(list(tmp_path.glob('worker-*')))}.log",
    ) as process:
        yield data_dir, process.pid


def client(redis_url: str) -> Celery:
    return Celery("presence-test", broker=redis_url, backend=redis_url)


def only(workers: list[WorkerPresence]) -> WorkerPresence:
    assert len(workers) == 1, workers
    return workers[0]


def test_worker_is_present_busy_while_running_and_gone_after_stop(
    tmp_path: Path, redis_url: str, redis: Redis
) -> None:
    queue = "acme-quake-1"
    # A long TTL: the record must go because the worker removes it, not because it expired.
    with worker(tmp_path, redis_url, queue, presence_env(ttl=60, refresh=0.5)) as (data, pid):
        idle = only(poll(lambda: live_workers(redis, queue), bool, "registered"))
        assert idle == WorkerPresence(
            node=f"{queue}.{pid}@{socket.gethostname()}",
            pid=pid,
            queue=queue,
            busy=False,
            since=idle.since,
            warming=idle.warming,  # its pool processes warm for seconds: test_warm_gate.py
        )
        assert 0 < redis.pttl(presence.key(idle.node)) <= 60_000
        assert live_workers(redis, "another-queue") == []
        before = time.time()
        with database_locked(data):
            client(redis_url).send_task(GENERATE_INPUTS_TASK, args=[1], queue=queue)
            busy = only(poll(lambda: live_workers(redis, queue), lambda w: w[0].busy, "busy"))
            assert busy.since >= before
        done = only(poll(lambda: live_workers(redis, queue), lambda w: not w[0].busy, "idle"))
        assert done.since > busy.since
        assert done.node == idle.node
    assert live_workers(redis, queue) == []


TTL = 3.0


def test_killed_worker_expires_and_others_stay(
    tmp_path: Path, redis_url: str, redis: Redis
) -> None:
    queue = "acme-flood-2"
    # Ten refreshes to a TTL: the survivor's record outlives a refresh starved for seconds by
    # the two workers' warm-ups on a loaded machine.
    env = presence_env(ttl=TTL, refresh=0.3)
    with (
        worker(tmp_path, redis_url, queue, env) as (_, kept),
        worker(tmp_path, redis_url, queue, env) as (_, killed),
    ):
        both = poll(lambda: live_workers(redis, queue), lambda w: len(w) == 2, "two registered")
        assert {w.pid for w in both} == {kept, killed}
        assert len({w.node for w in both}) == 2
        os.killpg(killed, signal.SIGKILL)
        left = poll(lambda: live_workers(redis, queue), lambda w: len(w) == 1, "killed one gone")
        assert only(left).pid == kept
        # The survivor keeps refreshing: present all along, for longer than a TTL.
        stop = time.monotonic() + TTL + 0.5
        while time.monotonic() < stop:
            assert only(live_workers(redis, queue)).pid == kept
            time.sleep(0.1)  # sampling over a period, not waiting for a state


def test_busy_mark_of_a_terminated_pool_process_is_dropped(
    tmp_path: Path, redis_url: str, redis: Redis
) -> None:
    queue = "acme-wind-3"
    with worker(tmp_path, redis_url, queue, presence_env(ttl=5, refresh=0.3)) as (data, _):
        poll(lambda: live_workers(redis, queue), bool, "registered")
        app = client(redis_url)
        with database_locked(data):
            result = app.send_task(GENERATE_INPUTS_TASK, args=[1], queue=queue)
            poll(lambda: live_workers(redis, queue), lambda w: w[0].busy, "busy")
            # SIGKILL: the pool process dies without task_postrun.
            app.control.revoke(result.id, terminate=True, signal="SIGKILL")
            poll(lambda: live_workers(redis, queue), lambda w: not w[0].busy, "idle again")


def test_malformed_records_are_skipped(redis: Redis, caplog: pytest.LogCaptureFixture) -> None:
    good: dict[FieldT, EncodableT] = {
        "node": "q.1@h",
        "pid": "1",
        "queue": "q-m-1",
        "idle_since": "10.5",
    }
    records: dict[str, dict[FieldT, EncodableT]] = {
        "good": good,
        "busy": {**good, "node": "q.2@h", "busy:7": "20.0", "busy:8": "15.0"},
        "no-pid": {k: v for k, v in good.items() if k != "pid"},
        "bad-pid": {**good, "pid": "x"},
        "bad-since": {**good, "idle_since": "soon"},
        "bad-busy": {**good, "busy:9": "later"},
        "empty-node": {**good, "node": ""},
        "not-utf8": {**good, "queue": b"\xff"},
        "bad-slots": {**good, "slots": "two"},
        "no-slots-at-all": {**good, "slots": "0"},
        # Its --concurrency: 4 sub-tasks at once.
        "slots": {**good, "node": "q.3@h", "slots": "4"},
    }
    names = [presence.key(f"malformed-{name}") for name in records]
    try:
        for name, fields in zip(names, records.values(), strict=True):
            redis.hset(name, mapping=fields)
        names.append(presence.key("malformed-string"))
        redis.set(names[-1], "not a hash")
        assert live_workers(redis, "q-m-1") == [
            WorkerPresence(node="q.1@h", pid=1, queue="q-m-1", busy=False, since=10.5),
            WorkerPresence(node="q.2@h", pid=1, queue="q-m-1", busy=True, since=15.0),
            WorkerPresence(node="q.3@h", pid=1, queue="q-m-1", busy=False, since=10.5, slots=4),
        ]
        assert sum("malformed worker record" in r.message for r in caplog.records) == 9
    finally:
        redis.delete(*names)


def test_the_warm_gate_is_said_at_once_and_never_after_the_worker_has_gone(redis: Redis) -> None:
    """`warmed()` (the warm gate opening) rewrites the record at once, however far the next
    refresh is; once stopped, neither it nor a refresh writes the record back."""
    closed = [True]
    record = presence.Presence(
        redis,
        node="q-w-1.1@h",
        queue="q-w-1",
        ttl_seconds=60,
        refresh_seconds=60,
        is_warming=lambda: closed[0],
    )
    record.warmed()  # before registration: nothing is written
    assert live_workers(redis, "q-w-1") == []
    record.start()
    try:
        assert only(live_workers(redis, "q-w-1")).warming
        closed[0] = False
        record.warmed()
        assert not only(live_workers(redis, "q-w-1")).warming
    finally:
        record.stop()
    assert live_workers(redis, "q-w-1") == []
    record.warmed()
    record.refresh()
    assert live_workers(redis, "q-w-1") == []
