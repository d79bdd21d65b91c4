"""Live workers in the API: `/v2/queue/` worker_count and the `oasis_model_workers` and
`oasis_model_busy_workers` gauges, from records written by worker/presence.py in the real Redis
(test_presence.py runs real workers; here the records are written as they write them)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from tests.integration.conftest import Call
from worker.presence import Presence

pytestmark = pytest.mark.integration


def new_model(api: Call) -> str:
    body = {"supplier_id": f"W{uuid.uuid4().hex[:8]}", "model_id": "M", "version_id": "1"}
    response = api("POST", "/v2/models/", json=body)
    assert response.status_code == 201
    return str(response.json()["queue_name"])


def worker_count(api: Call, queue: str) -> int:
    response = api("GET", "/v2/queue/")
    assert response.status_code == 200
    entries = [e for e in response.json() if e["name"] == queue]
    # A queue with no worker, sub-task nor message is left out, as the platform's.
    assert len(entries) <= 1
    return int(entries[0]["worker_count"]) if entries else 0


SLOTS = "oasis_model_worker_slots"


def gauges(api_url: str, queue: str) -> dict[str, float]:
    text = requests.get(f"{api_url}/metrics", timeout=10).text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in ("oasis_model_workers", "oasis_model_busy_workers", SLOTS)
        and sample.labels.get("model") == queue
    }


@pytest.fixture
def workers(redis: Redis) -> Iterator[Callable[..., Presence]]:
    started: list[Presence] = []

    def start(queue: str, slots: int = 1) -> Presence:
        presence = Presence(
            redis,
            node=f"{queue}.{len(started)}@{socket.gethostname()}",
            queue=queue,
            ttl_seconds=60,
            refresh_seconds=30,
            slots=slots,
        )
        presence.refresh()  # what the worker does when Celery is ready
        started.append(presence)
        return presence

    yield start
    for presence in started:
        presence.stop()


def test_live_and_busy_workers_per_model(
    api: Call, api_url: str, workers: Callable[..., Presence]
) -> None:
    queue, idle_queue = new_model(api), new_model(api)
    assert worker_count(api, queue) == 0
    assert gauges(api_url, queue) == {"oasis_model_workers": 0, "oasis_model_busy_workers": 0}
    first, _ = workers(queue), workers(queue)
    first.mark_busy()
    assert worker_count(api, queue) == 2
    assert worker_count(api, idle_queue) == 0
    # Slots per worker: 1 from a worker's record (its --concurrency).
    assert gauges(api_url, queue) == {
        "oasis_model_workers": 2,
        "oasis_model_busy_workers": 1,
        SLOTS: 1,
    }
    assert gauges(api_url, idle_queue) == {
        "oasis_model_workers": 0,
        "oasis_model_busy_workers": 0,
    }
    first.mark_idle()
    assert gauges(api_url, queue)["oasis_model_busy_workers"] == 0
    first.stop()
    assert worker_count(api, queue) == 1
    assert gauges(api_url, queue)["oasis_model_workers"] == 1


def test_slots_per_worker_come_from_the_workers_records(
    api: Call, api_url: str, workers: Callable[..., Presence]
) -> None:
    queue = new_model(api)
    workers(queue, slots=2)
    assert gauges(api_url, queue)[SLOTS] == 2
    # During a rollout to a higher concurrency the largest is published.
    workers(queue, slots=4)
    assert gauges(api_url, queue)[SLOTS] == 4


def test_a_malformed_record_never_breaks_the_reads(
    api: Call, api_url: str, redis: Redis, workers: Callable[..., Presence]
) -> None:
    queue = new_model(api)
    workers(queue)
    bad = [f"oasis:workers:bad-{uuid.uuid4().hex}" for _ in range(2)]
    redis.hset(bad[0], mapping={"node": "x", "queue": queue, "pid": "not a pid"})
    redis.set(bad[1], "not a hash")
    try:
        assert worker_count(api, queue) == 1
        assert gauges(api_url, queue)["oasis_model_workers"] == 1
    finally:
        redis.delete(*bad)
