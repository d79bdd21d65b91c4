"""A chord whose parts end while the broker is down still joins once the broker is back.

A real Redis with its append-only file (as the local stack runs it), a real Celery worker with
the worker's app and settings (tests/support/chord_worker.py). Both parts of a chord are held
running, Redis is SIGKILLed, the parts are let go, so that each stores its result and counts
its chord part against a dead broker, and Redis is started again on the same port and folder.
Celery's default gives up on the first connection error there: the join never came.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery, chord
from celery.app.task import Context
from redis import Redis

from cli.local.launch import LOOPBACK, free_port, redis_answers, redis_argv, stop_process
from tests.support.chord_gate import GATE, JOIN, JOINED, PART, returned, started
from tests.support.polling import poll
from worker.reconcile import queue_lists
from worker.result_backend import RetryingRedisBackend
from worker.settings import WorkerSettings
from worker.tasks import celery_config

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
QUEUE = "broker-restart-1"


class Broker:
    """A persistent Redis that the test can kill and start again where it was."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.argv = redis_argv(LOOPBACK, self.port, folder, persistent=True)
        self.log = folder / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"redis://{LOOPBACK}:{self.port}/0"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT)
        poll(lambda: _answers(self.port), "redis-server", deadline=30)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


def _answers(port: int) -> bool:
    try:
        return redis_answers(LOOPBACK, port)
    except OSError:
        return False


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    folder = tmp_path / "redis"
    folder.mkdir()
    broker = Broker(folder)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def worker_log(tmp_path: Path, broker: Broker) -> Iterator[Path]:
    """A real Celery worker on the chord's queue, two tasks at a time; yields its log."""
    log_path = tmp_path / "worker.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OASIS_AUTOSCALER_REDIS_URL": broker.url,
        "OASIS_AUTOSCALER_DATA_DIR": str(tmp_path / "data"),
        "OASIS_AUTOSCALER_QUEUE": QUEUE,
    }
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tests.support.chord_worker",
        "worker",
        "--queues",
        QUEUE,
        "--pool",
        "threads",
        "--concurrency",
        "2",
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        "INFO",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        poll(lambda: b" ready." in log_path.read_bytes(), "the worker", deadline=120)
        yield log_path
    finally:
        stop_process(process, grace=30)


def test_a_chord_whose_parts_end_while_the_broker_is_down_joins_once(
    tmp_path: Path, broker: Broker, worker_log: Path
) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    publisher = Celery("publisher", broker=broker.url, backend=broker.url)
    parts = [publisher.signature(PART, args=(str(gate), n), queue=QUEUE) for n in (0, 1)]
    joining = chord(
        parts, publisher.signature(JOIN, kwargs={"gate": str(gate)}, queue=QUEUE)
    ).apply_async()
    poll(lambda: all(started(gate, n).exists() for n in (0, 1)), "both parts running")

    broker.kill()
    (gate / GATE).touch()
    poll(lambda: all(returned(gate, n).exists() for n in (0, 1)), "both parts returning")
    # A part's result met the dead broker (the store is the first thing after a task's body).
    poll(lambda: b"_store_result" in worker_log.read_bytes(), "a result store failing")
    broker.start()

    joined = gate / JOINED
    poll(joined.exists, "the chord's join", deadline=90)
    assert [json.loads(line) for line in joined.read_text().splitlines()] == [[0, 1]]
    # The results the publisher awaits are let go while their Redis still runs: one collected
    # later would unsubscribe from a Redis the test has stopped, and warn in another test.
    joining.forget()
    publisher.close()


def test_a_chord_part_counted_while_the_broker_is_down_is_counted_when_it_is_back(
    tmp_path: Path, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    """The window the test above rarely meets: the result was stored, and the broker goes away
    before the part is counted. The count waits for the broker, then publishes the join."""
    app = Celery("counter", set_as_current=False)
    app.conf.update(celery_config(WorkerSettings(data_dir=tmp_path, redis_url=broker.url)))
    backend = app.backend
    assert isinstance(backend, RetryingRedisBackend)
    group, join_id = str(uuid.uuid4()), str(uuid.uuid4())
    backend.set_chord_size(group, 1)
    join = app.signature(JOIN, kwargs={"gate": str(tmp_path)}, queue=QUEUE, task_id=join_id)
    part = Context(id=str(uuid.uuid4()), group=group, group_index=0, chord=dict(join))

    broker.kill()
    errors: list[BaseException] = []

    def count() -> None:
        try:
            backend.on_chord_part_return(part, "SUCCESS", 0)
        except BaseException as error:  # the test reports it
            errors.append(error)

    caplog.set_level(logging.WARNING, logger="worker.result_backend")
    counting = threading.Thread(target=count)
    counting.start()
    poll(lambda: bool(errors) or "counting a part of chord" in caplog.text, "a count failing")
    assert errors == []
    broker.start()
    counting.join(timeout=60)
    assert not counting.is_alive() and errors == []

    redis = Redis.from_url(broker.url)
    queued = [json.loads(raw) for name in queue_lists(QUEUE) for raw in redis.lrange(name, 0, -1)]
    assert [m["headers"]["id"] for m in queued] == [join_id]
    redis.close()
    app.close()
