"""The API driven by the real OasisPlatform client (`oasislmf` APIClient), on SQLite and PostgreSQL.

The calls are those of the platform's autoscaling workshop: models, settings, scaling and
chunking configurations, portfolios, location files, analyses, generate, sub-tasks, queues.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from oasislmf.platform_api.client import APIClient

from api.exporter.snapshot import snapshot
from tests.integration.conftest import PASSWORD

pytestmark = pytest.mark.integration
SAMPLES = Path(__file__).resolve().parents[1] / "data" / "oasisplatform"

LOCATIONS = (
    "PortNumber,AccNumber,LocNumber,CountryCode,Latitude,Longitude,OccupancyCode,"
    "ConstructionCode,LocPerilsCovered,BuildingTIV,ContentsTIV,BITIV,LocCurrency\n"
    + "".join(f"1,A1,{i},GB,52.{i},-0.{i},1050,5000,WTC,{1000 * i},0,0,GBP\n" for i in range(1, 11))
)
MODEL_SETTINGS = {
    "model_settings": {
        "event_set": {
            "name": "Event Set",
            "default": "p",
            "options": [{"id": "p", "desc": "Probabilistic", "number_of_events": 1447}],
        }
    }
}
ANALYSIS_SETTINGS = {
    "model_settings": {"event_set": "p", "event_occurrence_id": "lt"},
    "gul_output": True,
    "gul_summaries": [{"id": 1}],
}


@pytest.fixture
def client(api_url: str) -> APIClient:
    return APIClient(api_url=api_url, username="admin", password=PASSWORD)


@pytest.fixture
def model(client: APIClient) -> dict[str, Any]:
    supplier = f"Oasis{uuid.uuid4().hex[:8]}"
    created: dict[str, Any] = client.models.create(supplier, "PiWind", "1").json()
    return created


def test_workshop_flow(client: APIClient, model: dict[str, Any], redis_url: str) -> None:
    supplier = model["supplier_id"]
    found = client.models.search({"supplier_id__contains": supplier.lower()}).json()
    assert [m["id"] for m in found] == [model["id"]]
    model_id = model["id"]
    assert model["queue_name"] == f"{supplier}-PiWind-1"

    client.models.settings.post(model_id, MODEL_SETTINGS)
    options = client.models.settings.get(model_id).json()["model_settings"]["event_set"]["options"]
    assert options[0]["number_of_events"] == 1447

    assert client.models.scaling_configuration.get(model_id).json() == {
        "scaling_strategy": "FIXED_WORKERS",
        "worker_count_fixed": 1,
        "worker_count_max": 10,
        "worker_count_min": 0,
        "chunks_per_worker": 10,
    }
    scaling = client.models.scaling_configuration.post(
        model_id,
        {"scaling_strategy": "DYNAMIC_TASKS", "chunks_per_worker": 5, "worker_count_max": 4},
    ).json()
    assert scaling == {
        "scaling_strategy": "DYNAMIC_TASKS",
        "worker_count_fixed": 1,
        "worker_count_max": 4,
        "worker_count_min": 0,
        "chunks_per_worker": 5,
    }
    chunking = client.models.chunking_configuration.post(
        model_id,
        {
            "lookup_strategy": "FIXED_CHUNKS",
            "fixed_lookup_chunks": 5,
            "loss_strategy": "DYNAMIC_CHUNKS",
            "dynamic_events_per_analysis": 100,
        },
    ).json()
    assert (chunking["fixed_lookup_chunks"], chunking["dynamic_events_per_analysis"]) == (5, 100)
    assert client.models.chunking_configuration.get(model_id).json() == chunking

    name = f"portfolio-{uuid.uuid4().hex[:8]}"
    portfolio_id = client.portfolios.create(name).json()["id"]
    assert [p["id"] for p in client.portfolios.search({"name": name}).json()] == [portfolio_id]
    client.portfolios.location_file.post(portfolio_id, LOCATIONS.encode(), content_type="text/csv")
    portfolio = client.portfolios.get(portfolio_id).json()
    assert portfolio["location_file"]["rows"] == 10
    assert client.portfolios.location_file.get(portfolio_id).text == LOCATIONS

    analysis_name = f"analysis-{uuid.uuid4().hex[:8]}"
    analysis = client.analyses.create(analysis_name, portfolio_id, model_id).json()
    assert (analysis["status"], analysis["priority"], analysis["run_mode"]) == ("NEW", 4, "V2")
    assert [a["id"] for a in client.analyses.search({"name": analysis_name}).json()] == [
        analysis["id"]
    ]
    assert (
        client.analyses.settings.post(analysis["id"], ANALYSIS_SETTINGS).json() == ANALYSIS_SETTINGS
    )
    effective = client.analyses.chunking_configuration.post(
        analysis["id"], {"fixed_lookup_chunks": 2}
    ).json()
    assert effective["fixed_lookup_chunks"] == 2
    assert effective["dynamic_events_per_analysis"] == 100  # inherited from the model

    generated = client.analyses.generate(analysis["id"]).json()
    assert generated["status"] == "INPUTS_GENERATION_QUEUED"
    assert client.analyses.status(analysis["id"]) == "INPUTS_GENERATION_QUEUED"
    queue = redis.Redis.from_url(redis_url)
    assert queue.llen(model["queue_name"]) == 1
    assert client.analyses.sub_task_list(analysis["id"]).json() == []

    status = client.queue_status().json()
    entry = next(c for c in status["content"] if c["queue"]["name"] == model["queue_name"])
    assert [a["analysis"]["id"] for a in entry["analyses"]] == [analysis["id"]]
    depth = next(q for q in client.queue().json() if q["name"] == model["queue_name"])
    assert depth["queue_message_count"] == 1


def test_queue_status_has_the_platforms_shape(client: APIClient, model: dict[str, Any]) -> None:
    """As a running OasisPlatform answers: idle queues left out, relative model URLs with
    `versions`, and a message the exporter's core reads whole."""
    queue_name = model["queue_name"]
    listed = [c["queue"]["name"] for c in client.queue_status().json()["content"]]
    assert queue_name not in listed, "an idle queue is left out"
    assert queue_name not in [q["name"] for q in client.queue().json()]

    client.models.settings.post(model["id"], MODEL_SETTINGS)
    portfolio = client.portfolios.create("shape").json()["id"]
    client.portfolios.location_file.post(portfolio, LOCATIONS.encode(), content_type="text/csv")
    analysis = client.analyses.create("shape", portfolio, model["id"]).json()["id"]
    client.analyses.settings.post(analysis, ANALYSIS_SETTINGS)
    client.analyses.generate(analysis)

    body = client.queue_status().json()
    entry = next(c for c in body["content"] if c["queue"]["name"] == queue_name)
    (listed_model,) = entry["queue"]["models"]
    base = f"/v2/models/{model['id']}/"
    assert listed_model["versions"] == base + "versions/"
    assert listed_model["scaling_configuration"] == base + "scaling_configuration/"
    assert listed_model["settings"] == base + "settings/"
    versions = client.api.get(client.api.url_base + listed_model["versions"][1:]).json()
    assert set(versions) == {"ver_ktools", "ver_oasislmf", "ver_platform"}
    assert versions["ver_oasislmf"]
    work = snapshot(body).work(queue_name)
    # Not split yet: its main task's message is the work, and the analysis counts.
    assert (work.analyses, work.messages) == (1, 1)

    # The keys a running OasisPlatform 2.5.6 answered with (tests/data/oasisplatform), ours
    # adding only the model's queue_name.
    captured = json.loads(
        (SAMPLES / "queue-status_generate_inputs_queued_no_worker.json").read_text()
    )
    platform_entry = captured["content"][0]
    assert set(body) == set(captured)
    assert set(entry) == set(platform_entry)
    assert set(entry["queue"]) == set(platform_entry["queue"])
    assert set(listed_model) == set(platform_entry["queue"]["models"][0]) | {"queue_name"}
    (ours,) = entry["analyses"]
    (theirs,) = platform_entry["analyses"]
    assert set(ours) == set(theirs)
    assert set(ours["analysis"]) == set(theirs["analysis"])
    assert set(ours["analysis"]["status_count"]) == set(theirs["analysis"]["status_count"])
    (queue_entry,) = [q for q in client.queue().json() if q["name"] == queue_name]
    platform_queue = json.loads(
        (SAMPLES / "queue_generate_inputs_queued_no_worker.json").read_text()
    )
    assert set(queue_entry) == set(platform_queue[0])


def test_upload_inputs_and_create_analysis_helpers(
    client: APIClient, model: dict[str, Any], tmp_path: Any
) -> None:
    location = tmp_path / "SourceLocOEDPiWind10.csv"
    location.write_text(LOCATIONS)
    portfolio = client.upload_inputs(portfolio_name="helpers", location_fp=str(location))
    analysis = client.create_analysis(portfolio["id"], model["id"], analysis_name="helpers")
    assert client.analyses.get(analysis["id"]).json()["portfolio"] == portfolio["id"]


def test_refusals_reach_the_client_as_400(client: APIClient, model: dict[str, Any]) -> None:
    with pytest.raises(requests.HTTPError) as caught:
        client.models.scaling_configuration.post(model["id"], {"worker_count_min": 50})
    assert caught.value.response.status_code == 400
    assert "worker_count_min" in caught.value.response.json()
    assert client.models.scaling_configuration.get(model["id"]).json()["worker_count_min"] == 0
