"""The reconciler puts back, exactly once, a queued sub-task whose message the broker lost.

A real Redis and the worker's real Celery app: the sub-task is published through Celery (so the
kept message is the one Celery made), then its message is taken away as a broker restart without
its data would.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.store.engine import make_engine
from api.store.orm import Analysis, Base, Model, Portfolio, SubTask
from worker import runtime as worker_runtime
from worker import tasks
from worker.activity import connect
from worker.demo_model import model_files
from worker.reconcile import SUSPECTS_KEY, held_ids, queue_lists, reconcile
from worker.settings import WorkerSettings
from worker.storage import Storage

pytestmark = pytest.mark.integration


@pytest.fixture
def world(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[sessionmaker[Session], Redis, str]]:
    """A database with one analysis, the worker's Celery app on the test's Redis, a fresh queue."""
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    Base.metadata.create_all(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    settings = WorkerSettings(data_dir=tmp_path, redis_url=redis_url)
    redis = connect(redis_url)
    monkeypatch.setattr(
        worker_runtime,
        "_current",
        worker_runtime.Runtime(settings, sessions, Storage(tmp_path), model_files(tmp_path), redis),
    )
    tasks.configure_app(settings)
    queue = f"Reconcile-{uuid.uuid4().hex[:8]}-1"
    with sessions.begin() as session:
        model = Model(supplier_id="S", model_id=queue, version_id="1")
        analysis = Analysis(name="a", portfolio=Portfolio(name="p"), model=model)
        analysis.status = "RUN_STARTED"
        session.add(analysis)
    redis.delete(SUSPECTS_KEY)
    yield sessions, redis, queue
    redis.close()
    engine.dispose()


def queue_sub_task(sessions: sessionmaker[Session], queue: str, slug: str) -> str:
    """Record a pending sub-task and publish it through Celery, as the splitter does."""
    task_id = str(uuid.uuid4())
    with sessions.begin() as session:
        analysis = session.scalars(select(Analysis)).one()
        session.add(
            SubTask(
                analysis=analysis,
                stage="losses",
                task_id=task_id,
                queue_name=queue,
                name=slug,
                slug=slug,
            )
        )
    tasks.app.signature(
        tasks.SUB_TASK,
        args=(1, "losses", slug, 1, 3),
        immutable=True,
        options={"queue": queue, "task_id": task_id},
    ).apply_async()
    return task_id


def on_queue(redis: Redis, queue: str) -> list[dict[str, object]]:
    return [json.loads(raw) for name in queue_lists(queue) for raw in redis.lrange(name, 0, -1)]


def lose_messages(redis: Redis, queue: str) -> None:
    redis.delete(*queue_lists(queue))


def test_a_lost_message_is_published_again_once_as_it_was(
    world: tuple[sessionmaker[Session], Redis, str],
) -> None:
    sessions, redis, queue = world
    task_id = queue_sub_task(sessions, queue, "generate-losses-chunk-1")
    first = on_queue(redis, queue)
    assert [m["headers"]["id"] for m in first] == [task_id]  # type: ignore[index]
    with sessions() as session:
        row = session.scalars(select(SubTask)).one()
        assert row.status == "QUEUED" and row.message is not None

    # Held: nothing to do, however often it looks.
    assert reconcile(sessions, redis, tasks.publish_again) == []
    assert reconcile(sessions, redis, tasks.publish_again) == []

    lose_messages(redis, queue)
    # Missing once may be a worker between taking it and recording it: only a suspect.
    assert reconcile(sessions, redis, tasks.publish_again) == []
    assert on_queue(redis, queue) == []
    # Missing twice: published again, the same message (id, task, arguments, chain).
    assert reconcile(sessions, redis, tasks.publish_again) == [task_id]
    again = on_queue(redis, queue)
    assert len(again) == 1
    assert again[0]["headers"] == first[0]["headers"]
    assert _body(again[0]) == _body(first[0])
    # And only once.
    for _ in range(3):
        assert reconcile(sessions, redis, tasks.publish_again) == []
    assert len(on_queue(redis, queue)) == 1


def test_a_message_a_worker_holds_is_left_alone(
    world: tuple[sessionmaker[Session], Redis, str],
) -> None:
    sessions, redis, queue = world
    task_id = queue_sub_task(sessions, queue, "generate-losses-chunk-2")
    raw = redis.rpop(queue)
    assert raw is not None
    # As kombu records a message a worker took: [message, exchange, routing_key].
    tag = f"tag-{task_id}"
    redis.hset("unacked", tag, json.dumps([json.loads(raw), "", queue]))
    try:
        assert task_id in held_ids(redis, [queue])
        for _ in range(3):
            assert reconcile(sessions, redis, tasks.publish_again) == []
    finally:
        redis.hdel("unacked", tag)


def test_racing_reconcilers_publish_once(
    world: tuple[sessionmaker[Session], Redis, str],
) -> None:
    sessions, redis, queue = world
    ids = {queue_sub_task(sessions, queue, f"generate-losses-chunk-{n}") for n in (1, 2, 3)}
    lose_messages(redis, queue)
    assert reconcile(sessions, redis, tasks.publish_again) == []  # all three suspects now
    published: list[str] = []
    lock = threading.Lock()

    def one_pass() -> None:
        done = reconcile(sessions, redis, tasks.publish_again)
        with lock:
            published.extend(done)

    racers = [threading.Thread(target=one_pass) for _ in range(4)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(timeout=30)
    assert sorted(published) == sorted(ids)
    assert sorted(m["headers"]["id"] for m in on_queue(redis, queue)) == sorted(ids)  # type: ignore[index]


def _body(message: dict[str, object]) -> object:
    body = message["body"]
    assert isinstance(body, str)
    return json.loads(base64.b64decode(body))
