"""GET /metrics against real servers: every number of docs/metrics.md, checked in one scrape.

Models and analyses are made through the HTTP API; the test then plays the parts no HTTP call
plays: the splitter and the model workers (worker/records.py on the API's database,
worker/activity.py on the same Redis), and Celery's reserved messages.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.queueing import UNACKED_KEY
from api.store.engine import make_engine
from api.store.orm import SubTask
from scaler.sources import ScrapeSource
from scaler.state import ModelState
from tests.integration.conftest import PASSWORD, ApiProcess
from tests.support.servers import api_server, binary, free_port
from worker import activity, records
from worker.activity import BUCKETS
from worker.demo_model import demo_locations
from worker.presence import Presence
from worker.stages import StagePlan, SubTaskSpec, input_generation, losses

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
# Run times of loss sub-tasks recorded straight through worker/activity.py, one per bucket
# region: under the first bound, between two, on a bound, above the last.
LOSS_RUN_TIMES = (0.25, 3.0, 60.0, 50_000.0)


class Api:
    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()
        token = self.http.post(
            f"{url}/access_token/", json={"username": "admin", "password": PASSWORD}, timeout=10
        )
        token.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    def post(self, path: str, **kwargs: Any) -> Any:
        response = self.http.post(self.url + path, timeout=10, **kwargs)
        assert response.status_code in (200, 201), (path, response.text)
        return response.json()

    def get(self, path: str) -> Any:
        response = self.http.get(self.url + path, timeout=10)
        assert response.status_code == 200, (path, response.text)
        return response.json()

    def model(self) -> tuple[int, str]:
        model = self.post(
            "/v2/models/",
            json={"supplier_id": f"M{uuid.uuid4().hex[:8]}", "model_id": "Cat", "version_id": "1"},
        )
        return int(model["id"]), str(model["queue_name"])

    def analysis(self, model: int, portfolio: int) -> int:
        body = {"name": f"a-{uuid.uuid4().hex[:6]}", "portfolio": portfolio, "model": model}
        return int(self.post("/v2/analyses/", json=body)["id"])

    def scrape(self) -> str:
        # No token: Prometheus scrapes without one.
        response = requests.get(f"{self.url}/metrics", timeout=10)
        assert response.status_code == 200
        return response.text


BY_PRIORITY = "oasis_model_analyses_by_priority"


def samples(exposition: str, models: set[str]) -> Samples:
    """The samples of the given models' series, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.labels.get("model") in models
    }


def gauges(
    model: str,
    *,
    analyses: int,
    pending: int,
    messages: int | None,
    recorded: int = 0,
    queued_or_running: int = 0,
    queued: int = 0,
    unqueued_chunks: int = 0,
    joining_chunks: int = 0,
) -> Samples:
    values = {
        "oasis_model_analyses": analyses,
        "oasis_model_pending_sub_tasks": pending,
        "oasis_model_recorded_sub_tasks": recorded,
        "oasis_model_queued_or_running_sub_tasks": queued_or_running,
        "oasis_model_queued_sub_tasks": queued,
        "oasis_model_unqueued_chunks": unqueued_chunks,
        "oasis_model_joining_chunks": joining_chunks,
    }
    if messages is not None:
        # Read from Redis with the queue: no worker runs in these tests.
        values |= {
            "oasis_model_queue_messages": messages,
            "oasis_model_workers": 0,
            "oasis_model_busy_workers": 0,
        }
    return {(name, frozenset({("model", model)})): value for name, value in values.items()}


def scaling(model: str, strategy: str, *, fixed: int, low: int, high: int, per: int) -> Samples:
    numbers = {
        "oasis_model_worker_count_fixed": fixed,
        "oasis_model_worker_count_min": low,
        "oasis_model_worker_count_max": high,
        "oasis_model_chunks_per_worker": per,
    }
    return {
        ("oasis_model_scaling_info", frozenset({("model", model), ("strategy", strategy)})): 1,
        **{(name, frozenset({("model", model)})): value for name, value in numbers.items()},
    }


def counters(model: str, counts: dict[tuple[str, str], int]) -> Samples:
    return {
        (
            "oasis_sub_tasks_total",
            frozenset({("model", model), ("stage", stage), ("status", status)}),
        ): n
        for (stage, status), n in counts.items()
    }


def histogram(model: str, stage: str, run_times: list[float]) -> Samples:
    labels = {("model", model), ("stage", stage)}
    buckets = {
        ("oasis_sub_task_duration_seconds_bucket", frozenset(labels | {("le", le)})): sum(
            1 for seconds in run_times if seconds <= bound
        )
        for le, bound in [(str(float(b)), b) for b in BUCKETS] + [("+Inf", float("inf"))]
    }
    return {
        **buckets,
        ("oasis_sub_task_duration_seconds_count", frozenset(labels)): len(run_times),
        ("oasis_sub_task_duration_seconds_sum", frozenset(labels)): sum(run_times),
    }


def assert_samples(actual: Samples, expected: Samples) -> None:
    assert set(actual) == set(expected), {
        "missing": set(expected) - set(actual),
        "unexpected": set(actual) - set(expected),
    }
    for key, value in expected.items():
        assert actual[key] == pytest.approx(value), key


def assert_promtool_accepts(exposition: str) -> None:
    # promtool comes with Debian's prometheus package (.ci/setup); missing, this is an error.
    result = subprocess.run(
        [binary("promtool"), "check", "metrics"],
        input=exposition,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def sessions(api_process: ApiProcess) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(api_process.database_url)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


def split(
    sessions: sessionmaker[Session], analysis: int, queue: str, chunks: int, *, run: bool = False
) -> list[str]:
    """What the splitter does to a queued analysis (with `run`, to its run): its stage's
    sub-tasks recorded, pending."""
    plan = losses(chunks) if run else input_generation(chunks)
    task_ids = [str(uuid.uuid4()) for _ in plan.sub_tasks]
    assert records.begin_stage(
        sessions,
        analysis,
        plan,
        task_ids,
        queue,
        expected="RUN_QUEUED" if run else "INPUTS_GENERATION_QUEUED",
        chunks_field="analysis_chunks" if run else "lookup_chunks",
    )
    return task_ids


def test_a_scrape_publishes_every_number(
    api_process: ApiProcess, redis: Redis, sessions: sessionmaker[Session]
) -> None:
    api = Api(api_process.url)
    busy_id, busy = api.model()
    _, idle = api.model()
    api.post(
        f"/v2/models/{busy_id}/scaling_configuration/",
        json={"scaling_strategy": "DYNAMIC_TASKS", "chunks_per_worker": 5, "worker_count_max": 7},
    )
    portfolio = int(api.post("/v2/portfolios/", json={"name": "p"})["id"])
    api.post(
        f"/v2/portfolios/{portfolio}/location_file/",
        files={"file": ("loc.csv", demo_locations(3).encode(), "text/csv")},
    )
    queued, running, failed, cancelled, new = (api.analysis(busy_id, portfolio) for _ in range(5))
    # Each puts one main task on the busy model's queue (no worker consumes it here).
    for analysis in (queued, running, failed, cancelled):
        assert api.post(f"/v2/analyses/{analysis}/generate_inputs/")["status"] == (
            "INPUTS_GENERATION_QUEUED"
        )

    # The splitter and the workers, as worker/tasks.py drives records and activity.
    slugs = [spec.slug for spec in input_generation(2).sub_tasks]
    for task_id in split(sessions, running, busy, chunks=2):
        marked = records.mark_queued(sessions, task_id)
        assert marked == records.Queued(busy, "inputs")
        activity.record(redis, marked.queue, marked.stage, "QUEUED")
    assert records.mark_queued(sessions, task_id) is None  # a retry's message is not counted
    for slug in slugs[:2]:
        assert records.start_sub_task(sessions, running, "inputs", slug, "w:1")
        activity.record(redis, busy, "inputs", "STARTED")
    seconds = records.finish_sub_task(sessions, running, "inputs", slugs[0], "done")
    assert seconds is not None and 0 <= seconds < 60
    activity.record_completed(redis, busy, "inputs", seconds)
    assert records.note_retry(sessions, running, "inputs", slugs[1], 1, "boom")
    activity.record(redis, busy, "inputs", "RETRIED")
    split(sessions, failed, busy, chunks=1)
    assert records.start_sub_task(sessions, failed, "inputs", slugs[0], "w:2")
    activity.record(redis, busy, "inputs", "STARTED")
    changed = records.fail_stage(sessions, failed, "inputs", slugs[0], "Traceback: boom")
    assert changed == {("inputs", "ERROR"): 1, ("inputs", "CANCELLED"): 5}
    activity.record_many(redis, busy, changed)
    split(sessions, cancelled, busy, chunks=1)
    # The API counts the 6 sub-tasks it cancels.
    api.post(f"/v2/analyses/{cancelled}/cancel/")
    for run_time in LOSS_RUN_TIMES:
        activity.record_completed(redis, busy, "losses", run_time)

    # Celery's side of the queue: priority lists, and reserved messages in `unacked`.
    redis.rpush(f"{busy}\x06\x163", "m")
    redis.rpush(f"{busy}\x06\x169", "m", "m")
    reserved = {
        "busy-1": json.dumps([{"body": "..."}, busy, busy]),
        "busy-2": json.dumps([{"body": "..."}, "", busy]),
        "other": json.dumps([{}, "elsewhere", f"elsewhere-{uuid.uuid4().hex}"]),
        "not-json": b"{not json",
        "not-utf8": b"\xff\xfe[1,2,3]",
        "too-short": json.dumps([{}, busy]),
        "key-not-text": json.dumps([{}, busy, 3]),
        "deep": "[" * 100_000 + "]" * 100_000,
    }
    tags = {f"{name}-{uuid.uuid4().hex}": value for name, value in reserved.items()}
    redis.hset(UNACKED_KEY, mapping=tags)
    try:
        exposition = api.scrape()
    finally:
        redis.hdel(UNACKED_KEY, *tags)

    assert_samples(
        samples(exposition, {busy, idle}),
        {
            # queued + running (split); failed, cancelled and new are not main tasks.
            # 7 sub-tasks of `running`, one completed; `failed` and `cancelled` have none left.
            # 4 main tasks + 3 in the priority lists + 2 reserved.
            # `running` has 7 sub-tasks recorded, all queued, one completed since: 6 queued or
            # running. `failed` and `cancelled` are no longer active: none of theirs counts.
            # None of them runs now (the one started went back to the queue for its retry):
            # all 6 wait for a worker.
            **gauges(
                busy,
                analyses=2,
                pending=6,
                messages=9,
                recorded=7,
                queued_or_running=6,
                queued=6,
            ),
            # Both main tasks at the default priority, 4; the idle model has none to count.
            (
                "oasis_model_analyses_by_priority",
                frozenset({("model", busy), ("priority", "4")}),
            ): 2,
            **scaling(busy, "DYNAMIC_TASKS", fixed=1, low=0, high=7, per=5),
            **gauges(idle, analyses=0, pending=0, messages=0),
            **scaling(idle, "FIXED_WORKERS", fixed=1, low=0, high=10, per=10),
            **counters(
                busy,
                {
                    ("inputs", "QUEUED"): 7,
                    ("inputs", "STARTED"): 3,
                    ("inputs", "COMPLETED"): 1,
                    ("inputs", "RETRIED"): 1,
                    ("inputs", "ERROR"): 1,
                    ("inputs", "CANCELLED"): 5 + 6,
                    ("losses", "COMPLETED"): len(LOSS_RUN_TIMES),
                },
            ),
            **histogram(busy, "inputs", [seconds]),
            **histogram(busy, "losses", list(LOSS_RUN_TIMES)),
        },
    )
    everything = {
        sample.name: sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }
    assert everything["oasis_redis_up"] == 1
    assert_promtool_accepts(exposition)


def stage_gauges(api: Api, model: str) -> tuple[float, float, float | None]:
    """The model's unqueued chunks, joining chunks and stage gap (None: not published)."""
    scraped = samples(api.scrape(), {model})
    label = frozenset({("model", model)})
    return (
        scraped[("oasis_model_unqueued_chunks", label)],
        scraped[("oasis_model_joining_chunks", label)],
        scraped.get(("oasis_model_stage_gap_seconds", label)),
    )


def inputs_under_way(api: Api, model_id: int) -> int:
    """A new analysis of the model, queued to generate its inputs."""
    portfolio = int(api.post("/v2/portfolios/", json={"name": "p"})["id"])
    api.post(
        f"/v2/portfolios/{portfolio}/location_file/",
        files={"file": ("loc.csv", demo_locations(4).encode(), "text/csv")},
    )
    analysis = api.analysis(model_id, portfolio)
    api.post(f"/v2/analyses/{analysis}/generate_inputs/")
    return analysis


def run_sub_tasks(
    sessions: sessionmaker[Session], analysis: int, specs: Iterable[SubTaskSpec], *, end: bool
) -> None:
    """What the workers record of these input sub-tasks: started, and with `end` completed
    (the last of the stage moves the analysis to READY)."""
    for spec in specs:
        assert records.start_sub_task(sessions, analysis, "inputs", spec.slug, "w:1")
        if end:
            done = "READY" if spec.slug == input_generation(1).last.slug else None
            records.finish_sub_task(
                sessions, analysis, "inputs", spec.slug, "done", analysis_status=done
            )


def queue_first_loss_chunk(
    api: Api, sessions: sessionmaker[Session], analysis: int, queue: str
) -> StagePlan:
    """The analysis's run: its losses stage recorded (2 chunks), then its sub-tasks queued up
    to its first chunk, which sets the model's stage gap."""
    api.post(f"/v2/analyses/{analysis}/settings/", json={"model_settings": {"event_set": "p"}})
    assert api.post(f"/v2/analyses/{analysis}/run/")["status"] == "RUN_QUEUED"
    plan = losses(2)
    task_ids = split(sessions, analysis, queue, 2, run=True)
    for task_id in task_ids[: len(plan.before) + 1]:
        records.mark_queued(sessions, task_id)
    return plan


def test_the_stage_gauges_follow_an_analysis_through_its_stages(
    api_process: ApiProcess, sessions: sessionmaker[Session]
) -> None:
    api = Api(api_process.url)
    model_id, model = api.model()
    created = api.get(f"/v2/models/{model_id}/")
    analysis = inputs_under_way(api, model_id)
    plan = input_generation(3)
    task_ids = split(sessions, analysis, model, chunks=3)
    # Recorded, not queued yet: the split is about to queue its 3 chunks.
    assert stage_gauges(api, model) == (3, 0, None)
    for task_id in task_ids:
        records.mark_queued(sessions, task_id)
    assert stage_gauges(api, model) == (0, 0, None)
    run_sub_tasks(sessions, analysis, plan.before + plan.chunks[:2], end=True)
    assert stage_gauges(api, model) == (0, 0, None)  # one chunk still queued
    run_sub_tasks(sessions, analysis, plan.chunks[-1:], end=False)
    # None left to take: the last one runs, then the join; the stage's 3 chunks are joining.
    assert stage_gauges(api, model) == (0, 3, None)
    records.finish_sub_task(sessions, analysis, "inputs", plan.chunks[-1].slug, "done")
    assert stage_gauges(api, model) == (0, 3, None)
    run_sub_tasks(sessions, analysis, plan.after, end=True)
    assert stage_gauges(api, model) == (0, 0, None)

    # The losses stage: recorded (2 chunks not queued), then queued up to its first chunk,
    # which sets the gap.
    loss_plan = queue_first_loss_chunk(api, sessions, analysis, model)
    unqueued, joining, gap = stage_gauges(api, model)
    assert (unqueued, joining) == (1, 0)
    # From the last input chunk's end to this first loss chunk's queueing, as recorded.
    with sessions() as session:
        rows = session.scalars(select(SubTask).where(SubTask.analysis_id == analysis)).all()
        ended = max(r.end_time for r in rows if r.slug in {c.slug for c in plan.chunks})
        queued = next(r.queue_time for r in rows if r.slug == loss_plan.chunks[0].slug)
    assert queued is not None and ended is not None
    assert gap == pytest.approx((queued - ended).total_seconds(), abs=1e-3)
    assert gap > 0
    # Written on the model, not an edit of it: its `modified` is what it was.
    assert api.get(f"/v2/models/{model_id}/")["modified"] == created["modified"]


def test_the_scaler_keeps_a_joining_stage_s_workers_after_a_short_gap(
    api_process: ApiProcess, redis: Redis, sessions: sessionmaker[Session]
) -> None:
    """The scaler, reading the API as it runs, keeps the 4 workers of an input stage whose
    last chunks run when the model's last gap between stages was shorter than a worker start;
    with a worker start no longer than that gap, only the 2 the work asks for."""
    api = Api(api_process.url)
    model_id, model = api.model()
    api.post(
        f"/v2/models/{model_id}/scaling_configuration/",
        json={"scaling_strategy": "DYNAMIC_TASKS", "chunks_per_worker": 2},
    )
    first = inputs_under_way(api, model_id)
    for task_id in split(sessions, first, model, chunks=2):
        records.mark_queued(sessions, task_id)
    run_sub_tasks(sessions, first, input_generation(2).sub_tasks, end=True)
    queue_first_loss_chunk(api, sessions, first, model)
    api.post(f"/v2/analyses/{first}/cancel/")  # its gap stays; its sub-tasks count no more

    second = inputs_under_way(api, model_id)
    plan = input_generation(4)
    task_ids = split(sessions, second, model, chunks=4)
    for task_id in task_ids[: len(plan.before) + len(plan.chunks)]:
        records.mark_queued(sessions, task_id)
    run_sub_tasks(sessions, second, plan.before, end=True)
    # Its 4 chunks run on 4 workers; its 4 later sub-tasks are pending, nothing is queued.
    run_sub_tasks(sessions, second, plan.chunks, end=False)
    workers = [
        Presence(redis, node=f"{model}.{i}@test", queue=model, ttl_seconds=60, refresh_seconds=30)
        for i in range(4)
    ]
    for worker in workers:
        worker.refresh()
    try:
        held = scaler_state(api, model, worker_start=30.0)
        assert held.stage_gap is not None and held.stage_gap < 30.0
        assert (held.joining_chunks, held.workers, held.queued) == (4, 4, 0)
        assert held.desired == 4
        # Upstream's count is 5 and the 4 sub-tasks ahead ask for 2 (2 per worker).
        assert scaler_state(api, model, worker_start=held.stage_gap).desired == 2
    finally:
        redis.delete(*(worker.key for worker in workers))


def scaler_state(api: Api, model: str, *, worker_start: float) -> ModelState:
    source = ScrapeSource([f"{api.url}/metrics"], timeout=10, worker_start=worker_start)
    try:
        return source()[model]
    finally:
        source.close()


def test_a_configuration_change_shows_on_the_next_scrape(api_url: str) -> None:
    api = Api(api_url)
    model_id, model = api.model()
    idle = gauges(model, analyses=0, pending=0, messages=0)
    assert_samples(
        samples(api.scrape(), {model}),
        {**idle, **scaling(model, "FIXED_WORKERS", fixed=1, low=0, high=10, per=10)},
    )
    api.post(
        f"/v2/models/{model_id}/scaling_configuration/",
        json={"scaling_strategy": "QUEUE_LOAD", "worker_count_max": 3, "worker_count_min": 2},
    )
    # The old strategy's series is gone, not left at 1 beside the new one.
    assert_samples(
        samples(api.scrape(), {model}),
        {**idle, **scaling(model, "QUEUE_LOAD", fixed=1, low=2, high=3, per=10)},
    )


def test_without_redis_the_database_gauges_still_publish(tmp_path: Path) -> None:
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    with api_server(tmp_path / "data", database_url=None, redis_url=unreachable) as url:
        api = Api(url)
        model_id, model = api.model()
        api.post(f"/v2/models/{model_id}/scaling_configuration/", json={"worker_count_fixed": 4})
        started = time.monotonic()
        exposition = api.scrape()
        elapsed = time.monotonic() - started
    assert elapsed < 2, f"a scrape without Redis took {elapsed:.2f} s"
    assert_samples(
        samples(exposition, {model}),
        {
            **gauges(model, analyses=0, pending=0, messages=None),
            **scaling(model, "FIXED_WORKERS", fixed=4, low=0, high=10, per=10),
        },
    )
    names = {family.name for family in text_string_to_metric_families(exposition)}
    assert "oasis_model_queue_messages" not in names
    assert not names & {"oasis_sub_tasks", "oasis_sub_task_duration_seconds"}
    everything = {
        sample.name: sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }
    assert everything["oasis_redis_up"] == 0
    assert_promtool_accepts(exposition)
