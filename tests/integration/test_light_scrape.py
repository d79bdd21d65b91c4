"""`/metrics?name[]=...`: only the asked samples, computed from only what they need, and the
scaler's light scrape builds the same states as the whole exposition."""

from __future__ import annotations

import uuid

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from scaler.metric_names import SCALER_INPUTS
from scaler.samples import build_states
from scaler.sources import ScrapeSource, text_samples
from tests.integration.conftest import Call
from worker import activity

pytestmark = pytest.mark.integration


@pytest.fixture
def busy_models(api: Call, redis: Redis) -> list[str]:
    """Two models with configurations of their own and sub-task activity recorded."""
    queues = []
    for strategy, low, high in (("QUEUE_LOAD", 1, 3), ("DYNAMIC_TASKS", 0, 7)):
        body = {"supplier_id": f"L{uuid.uuid4().hex[:8]}", "model_id": "M", "version_id": "1"}
        created = api("POST", "/v2/models/", json=body)
        assert created.status_code == 201
        scaling = {"scaling_strategy": strategy, "worker_count_min": low, "worker_count_max": high}
        path = f"/v2/models/{created.json()['id']}/scaling_configuration/"
        assert api("POST", path, json=scaling).status_code == 200
        queue = created.json()["queue_name"]
        activity.record(redis, queue, "inputs", "QUEUED", 4)
        activity.record_completed(redis, queue, "inputs", 3.0)
        queues.append(queue)
    return queues


def scrape(api_url: str, names: list[str] | None = None) -> str:
    params = [("name[]", name) for name in names or []]
    response = requests.get(f"{api_url}/metrics", params=params, timeout=10)
    assert response.status_code == 200
    return response.text


def sample_names(exposition: str) -> set[str]:
    return {
        sample.name
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def test_the_output_holds_exactly_the_asked_samples(api_url: str, busy_models: list[str]) -> None:
    asked = [
        "oasis_model_analyses",
        "oasis_model_workers",
        "oasis_sub_tasks_total",
        "oasis_sub_task_duration_seconds_count",
        "oasis_redis_up",
    ]
    assert sample_names(scrape(api_url, asked)) == set(asked)
    assert sample_names(scrape(api_url, list(SCALER_INPUTS))) <= set(SCALER_INPUTS)
    assert "oasis_model_scaling_info" in sample_names(scrape(api_url, list(SCALER_INPUTS)))


@pytest.mark.parametrize("names", [["no_such_metric"], [""], ["oasis_sub_task_duration_seconds"]])
def test_names_the_api_does_not_publish_give_an_empty_body(
    api_url: str, busy_models: list[str], names: list[str]
) -> None:
    # A histogram's samples are its _bucket, _sum and _count: its bare name selects none.
    assert scrape(api_url, names) == ""


def test_the_light_scrape_never_reads_the_sub_task_hashes(
    api_url: str, busy_models: list[str], redis: Redis
) -> None:
    def calls(command: str) -> int:
        stats = redis.info("commandstats").get(f"cmdstat_{command}", {})
        return int(stats.get("calls", 0))

    before = calls("hgetall")
    light = scrape(api_url, list(SCALER_INPUTS))
    assert calls("hgetall") == before
    full = scrape(api_url)
    assert calls("hgetall") >= before + 2  # the two sub-task hashes
    assert len(light) < len(full)
    assert "oasis_sub_tasks_total" in full


def test_the_scaler_builds_the_same_states_from_the_light_scrape(
    api_url: str, busy_models: list[str]
) -> None:
    full = build_states(text_samples(scrape(api_url)))
    source = ScrapeSource([f"{api_url}/metrics"], timeout=10)
    try:
        light = source()
    finally:
        source.close()
    assert light == full.states
    assert {q: light[q].configuration.worker_count_max for q in busy_models} == dict(
        zip(busy_models, (3, 7), strict=True)
    )


def test_the_scrape_asks_for_the_inputs_named_at_request_time(
    api_url: str, busy_models: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = ScrapeSource([f"{api_url}/metrics"], timeout=10)
    try:
        assert set(busy_models) <= set(source())
        # Without the info gauge in the query no model is known: the query follows the tuple.
        inputs = tuple(name for name in SCALER_INPUTS if name != "oasis_model_scaling_info")
        monkeypatch.setattr("scaler.metric_names.SCALER_INPUTS", inputs)
        assert source() == {}
    finally:
        source.close()
