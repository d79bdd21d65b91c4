"""A failed attempt is queued again only while its analysis is still in the attempt's stage.

The analyses are made and cancelled through the HTTP API; the test plays the worker's part
through worker/records.py on the API's database (SQLite and PostgreSQL).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.store.engine import make_engine
from api.store.orm import Analysis, SubTask
from api.store.statuses import INPUTS
from tests.integration.conftest import PASSWORD, ApiProcess
from worker import records
from worker.demo_model import demo_locations
from worker.stages import input_generation

pytestmark = pytest.mark.integration

STAGE = "inputs"
PLAN = input_generation(2)
RUNNING, OTHER = PLAN.chunks[0].slug, PLAN.chunks[1].slug


@pytest.fixture
def sessions(api_process: ApiProcess) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(api_process.database_url)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


@pytest.fixture
def post(api_process: ApiProcess) -> Callable[..., Any]:
    http = requests.Session()
    token = http.post(
        f"{api_process.url}/access_token/",
        json={"username": "admin", "password": PASSWORD},
        timeout=10,
    )
    token.raise_for_status()
    http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    def send(path: str, **kwargs: Any) -> Any:
        response = http.post(api_process.url + path, timeout=10, **kwargs)
        assert response.status_code in (200, 201), (path, response.text)
        return response.json()

    return send


@pytest.fixture
def running(post: Callable[..., Any], sessions: sessionmaker[Session]) -> int:
    """An analysis generating its inputs in two chunks, the first one started."""
    ids = {"supplier_id": f"M{uuid.uuid4().hex[:8]}", "model_id": "Cat", "version_id": "1"}
    model = post("/v2/models/", json=ids)
    portfolio = post("/v2/portfolios/", json={"name": "p"})["id"]
    post(
        f"/v2/portfolios/{portfolio}/location_file/",
        files={"file": ("loc.csv", demo_locations(3).encode(), "text/csv")},
    )
    body = {"name": "a", "portfolio": portfolio, "model": model["id"]}
    analysis = int(post("/v2/analyses/", json=body)["id"])
    post(f"/v2/analyses/{analysis}/generate_inputs/")
    task_ids = [str(uuid.uuid4()) for _ in PLAN.sub_tasks]
    assert records.begin_stage(
        sessions,
        analysis,
        PLAN,
        task_ids,
        model["queue_name"],
        expected=INPUTS.queued,
        chunks_field="lookup_chunks",
    )
    for slug in (RUNNING, OTHER):
        assert records.start_sub_task(sessions, analysis, STAGE, slug, "w:1")
    return analysis


def test_a_failed_attempt_is_queued_again(sessions: sessionmaker[Session], running: int) -> None:
    assert records.note_retry(sessions, running, STAGE, RUNNING, 1, "boom")
    task = sub_task(sessions, running, RUNNING)
    assert (task.status, task.retry_count) == ("QUEUED", 1)
    assert task.retry_log == "attempt 1 failed: boom\n"


def test_no_retry_once_the_analysis_is_cancelled(
    sessions: sessionmaker[Session], running: int, post: Callable[..., Any]
) -> None:
    assert post(f"/v2/analyses/{running}/cancel/")["status"] == INPUTS.cancelled
    assert_not_retried(sessions, running)
    assert status(sessions, running) == INPUTS.cancelled


def test_no_retry_once_another_sub_task_failed_the_stage(
    sessions: sessionmaker[Session], running: int
) -> None:
    records.fail_stage(sessions, running, STAGE, OTHER, "Traceback: boom")
    assert_not_retried(sessions, running)
    assert status(sessions, running) == INPUTS.error


def test_no_retry_of_a_sub_task_that_is_gone(sessions: sessionmaker[Session], running: int) -> None:
    assert not records.note_retry(sessions, running, STAGE, "no-such-slug", 1, "boom")


def assert_not_retried(sessions: sessionmaker[Session], analysis: int) -> None:
    before = sub_task(sessions, analysis, RUNNING)
    assert before.status == "CANCELLED"
    assert not records.note_retry(sessions, analysis, STAGE, RUNNING, 1, "boom")
    after = sub_task(sessions, analysis, RUNNING)
    assert (after.status, after.retry_count, after.retry_log) == (
        "CANCELLED",
        before.retry_count,
        before.retry_log,
    )


def sub_task(sessions: sessionmaker[Session], analysis: int, slug: str) -> SubTask:
    with sessions() as session:
        task = session.scalar(
            select(SubTask).where((SubTask.analysis_id == analysis) & (SubTask.slug == slug))
        )
        assert task is not None
        return task


def status(sessions: sessionmaker[Session], analysis: int) -> str:
    with sessions() as session:
        row = session.get(Analysis, analysis)
        assert row is not None
        return row.status
