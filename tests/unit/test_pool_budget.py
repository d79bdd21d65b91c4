"""The local pool holds the machine's worker budget across models: replicas beyond it are not
started but counted, and a stopping worker holds its place until it has gone."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from redis.exceptions import ConnectionError as RedisConnectionError

from cli.local.pool import WorkerPool
from cli.local.stack import last_line, usual_or_free
from cli.local.supervisor import Supervisor
from worker.presence import WorkerPresence


@contextmanager
def sleeping_pool(
    tmp_path: Path,
    presence: Callable[[str], Sequence[WorkerPresence]] = lambda queue: [],
    limit: int | None = None,
) -> Iterator[tuple[Supervisor, WorkerPool]]:
    """A pool whose workers are real processes that only sleep, all stopped on exit."""
    supervisor = Supervisor(tmp_path / "logs", sessions_file=tmp_path / "sessions")
    pool = WorkerPool(
        supervisor,
        command=lambda queue: (["sleep", "60"], {}),
        presence=presence,
        grace_seconds=5,
        limit=limit,
    )
    try:
        yield supervisor, pool
    finally:
        supervisor.stop_all(grace=5)


def test_replicas_beyond_the_budget_are_counted_not_started(tmp_path: Path) -> None:
    with sleeping_pool(tmp_path, limit=3) as (supervisor, pool):
        pool.scale("a", 2)
        pool.scale("b", 2)
        assert (pool.counts("a").running, pool.counts("a").not_started) == (2, 0)
        assert (pool.counts("b").running, pool.counts("b").not_started) == (1, 1)
        assert pool.present() == 3 and pool.not_started() == 1
        # The tether's file names every child's session.
        assert len((tmp_path / "sessions").read_text().split()) == 3
        pool.scale("a", 0)  # both stop; they count until they have gone
        assert pool.counts("a").stopping == 2
        stop = time.monotonic() + 10
        while pool.counts("b").running < 2:
            assert time.monotonic() < stop, "the room of the stopped workers was never given"
            pool.scale("b", 2)
            time.sleep(0.05)  # polling with a deadline
        # b's second worker may start as soon as the first of a's has gone, while the other
        # still drains: the budget holds all along, and once a's are gone only b's are left.
        assert pool.counts("b").not_started == 0 and pool.present() <= 3
        while pool.present() != 2:
            assert time.monotonic() < stop, "a's stopped workers never left"
            assert pool.present() <= 3
            supervisor.reap(5)
            time.sleep(0.05)  # polling with a deadline
        assert pool.counts("b").running == 2
    assert (tmp_path / "sessions").read_text() == ""


def test_a_usual_port_that_is_taken_gives_way_to_a_free_one() -> None:
    with socket.create_server(("127.0.0.1", 0)) as held:
        port = held.getsockname()[1]
        other = usual_or_free("127.0.0.1", port)
        assert other != port
        with socket.create_server(("127.0.0.1", other)):
            pass  # it is free
    assert usual_or_free("127.0.0.1", port) == port  # free again: the usual one


def test_the_reason_of_an_exit_is_the_last_line_of_its_log(tmp_path: Path) -> None:
    log = tmp_path / "scaler.log"
    log.write_text("starting\nerror: [Errno 98] Address already in use\n\n")
    assert last_line(log) == "error: [Errno 98] Address already in use"
    assert last_line(tmp_path / "missing.log") == "(no log)"


def test_workers_taking_nothing_yet_count_as_warming(tmp_path: Path) -> None:
    """Of four running workers: one busy, one registered idle, one registered warming and one
    not registered yet (Celery still starting). The last two take nothing yet."""
    records: list[WorkerPresence] = []
    with sleeping_pool(tmp_path, lambda queue: records) as (supervisor, pool):
        pool.scale("a", 4)
        busy, idle, warming, _ = (child.process.pid for child in supervisor.children)
        records += [
            WorkerPresence("a-1", busy, "a", busy=True, since=1.0),
            WorkerPresence("a-2", idle, "a", busy=False, since=1.0),
            WorkerPresence("a-3", warming, "a", busy=False, since=1.0, warming=True),
            WorkerPresence("b-1", 1, "a", busy=False, since=1.0, warming=True),  # not ours
        ]
        counts = pool.counts("a")
        assert (counts.running, counts.busy, counts.warming) == (4, 1, 2)


def test_without_the_broker_no_worker_is_said_busy_or_warming(tmp_path: Path) -> None:
    """The records cannot be read: what the workers do is unknown, not "all warming"."""

    def unreachable(queue: str) -> list[WorkerPresence]:
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    with sleeping_pool(tmp_path, unreachable) as (_, pool):
        pool.scale("a", 2)
        counts = pool.counts("a")
        assert (counts.running, counts.busy, counts.warming) == (2, 0, 0)
        pool.scale("a", 1)  # victims are still chosen, all ranked alike
        assert pool.counts("a").running == 1
