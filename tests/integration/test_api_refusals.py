"""Refused requests answer 400/404 naming each bad field, and leave stored state unchanged."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from redis import Redis

from api.queueing import queue_lists
from tests.integration.conftest import Call
from worker.demo_model import demo_locations

pytestmark = pytest.mark.integration


@pytest.fixture
def model_id(api: Call) -> int:
    response = api(
        "POST",
        "/v2/models/",
        json={"supplier_id": f"S{uuid.uuid4().hex[:8]}", "model_id": "M", "version_id": "1"},
    )
    assert response.status_code == 201
    model: int = response.json()["id"]
    api(
        "POST",
        f"/v2/models/{model}/scaling_configuration/",
        json={"worker_count_min": 2, "worker_count_max": 4},
    )
    return model


def snapshot(api: Call, model_id: int) -> bytes:
    """Everything the refusals could touch, as bytes."""
    parts = [
        api("GET", f"/v2/models/{model_id}/{resource}/").content
        for resource in ("", "scaling_configuration", "chunking_configuration")
    ]
    return b"\n".join(parts)


SCALING_REFUSALS = [
    ({"worker_count_max": True}, {"worker_count_max"}),
    ({"worker_count_max": 1.5}, {"worker_count_max"}),
    ({"worker_count_max": "3"}, {"worker_count_max"}),
    ({"worker_count_max": None}, {"worker_count_max"}),
    ({"worker_count_fixed": -1}, {"worker_count_fixed"}),
    ({"worker_count_fixed": 2**31}, {"worker_count_fixed"}),
    ({"chunks_per_worker": 0}, {"chunks_per_worker"}),
    ({"scaling_strategy": "fixed_workers"}, {"scaling_strategy"}),
    ({"worker_count_mx": 3}, {"worker_count_mx"}),
    # The stored max is 4: a min of 5 meets it.
    ({"worker_count_min": 5}, {"worker_count_min", "worker_count_max"}),
    ({"worker_count_max": 1}, {"worker_count_min", "worker_count_max"}),
    ({"worker_count_max": 9, "worker_count_fixed": False}, {"worker_count_fixed"}),
]


@pytest.mark.parametrize(
    ("body", "fields"), SCALING_REFUSALS, ids=[json.dumps(b) for b, _ in SCALING_REFUSALS]
)
def test_scaling_refusals_change_nothing(
    api: Call, model_id: int, body: dict[str, Any], fields: set[str]
) -> None:
    before = snapshot(api, model_id)
    response = api("POST", f"/v2/models/{model_id}/scaling_configuration/", json=body)
    assert response.status_code == 400
    errors = response.json()
    assert set(errors) == fields
    assert all(
        isinstance(reasons, list) and reasons and all(reasons) for reasons in errors.values()
    )
    assert snapshot(api, model_id) == before


CHUNKING_REFUSALS = [
    {"fixed_lookup_chunks": 0},
    {"dynamic_chunks_max": -3},
    {"lookup_strategy": "DYNAMIC"},
    {"dynamic_events_per_analysis": True},
    {"fixed_analysis_chunks": None},
    {"fixed_chunks": 2},
]


@pytest.mark.parametrize("body", CHUNKING_REFUSALS, ids=[json.dumps(b) for b in CHUNKING_REFUSALS])
def test_chunking_refusals_change_nothing(api: Call, model_id: int, body: dict[str, Any]) -> None:
    before = snapshot(api, model_id)
    response = api("POST", f"/v2/models/{model_id}/chunking_configuration/", json=body)
    assert response.status_code == 400
    assert set(response.json()) == set(body)
    assert snapshot(api, model_id) == before


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", '"text"', "null", ""])
def test_a_body_that_is_not_a_json_object_is_refused(api: Call, model_id: int, raw: str) -> None:
    before = snapshot(api, model_id)
    response = api(
        "POST",
        f"/v2/models/{model_id}/scaling_configuration/",
        data=raw,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert "body" in response.json()
    assert snapshot(api, model_id) == before


def test_unknown_ids_are_404(api: Call) -> None:
    for path in (
        "/v2/models/999999/",
        "/v2/models/999999/scaling_configuration/",
        "/v2/portfolios/999999/",
        "/v2/analyses/999999/",
        "/v2/analysis-task-statuses/999999/",
    ):
        response = api("GET", path)
        assert response.status_code == 404, path
        assert "Not found" in response.json()["detail"]


def test_a_duplicate_model_is_refused(api: Call, model_id: int) -> None:
    model = api("GET", f"/v2/models/{model_id}/").json()
    response = api(
        "POST", "/v2/models/", json={k: model[k] for k in ("supplier_id", "model_id", "version_id")}
    )
    assert response.status_code == 400
    assert "already exists" in response.json()["version_id"][0]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "no header row"),
        (b"LocNumber,Latitude\n", "no data rows"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not UTF-8"),
        (b"LocNumber,Latitude\n1,2,3\n", "row 2 has 3 fields"),
    ],
)
def test_bad_location_files_are_refused(api: Call, content: bytes, reason: str) -> None:
    portfolio = api("POST", "/v2/portfolios/", json={"name": "bad files"}).json()["id"]
    before = api("GET", f"/v2/portfolios/{portfolio}/").content
    response = api(
        "POST",
        f"/v2/portfolios/{portfolio}/location_file/",
        files={"file": ("loc.csv", content, "text/csv")},
    )
    assert response.status_code == 400
    assert reason in response.json()["file"][0]
    assert api("GET", f"/v2/portfolios/{portfolio}/").content == before


def without_column(text: str, column: str) -> bytes:
    rows = [line.split(",") for line in text.splitlines()]
    at = rows[0].index(column)
    return "".join(",".join(r[:at] + r[at + 1 :]) + "\n" for r in rows).encode()


def with_value(text: str, column: str, row: int, value: str) -> bytes:
    rows = [line.split(",") for line in text.splitlines()]
    rows[row][rows[0].index(column)] = value
    return "".join(",".join(r) + "\n" for r in rows).encode()


LOCATIONS = demo_locations(4)
EXPOSURE_REFUSALS = [
    # ods_tools' own OED check answers these.
    (with_value(LOCATIONS, "OccupancyCode", 2, "9999"), ["OccupancyCode", "9999"]),
    (with_value(LOCATIONS, "BuildingTIV", 3, "-5"), ["BuildingTIV", "outside range"]),
    (without_column(LOCATIONS, "LocNumber"), ["LocNumber missing"]),
    # What it lets through and oasislmf trips on.
    (with_value(LOCATIONS, "BuildingTIV", 2, "lots"), ["BuildingTIV", "'lots' in row 3"]),
    (b"PortNumber,AccNumber,LocNumber\n1,1,1\n", ["none of the TIV columns", "ContentsTIV"]),
    (
        b"PortNumber,AccNumber,LocNumber,BuildingTIV\n1,1,1,0\n1,1,2,\n",
        ["BuildingTIV", "every insured value is 0"],
    ),
]


@pytest.mark.parametrize(
    ("content", "names"),
    EXPOSURE_REFUSALS,
    ids=["bad occupancy", "negative TIV", "no LocNumber", "text TIV", "no TIV", "zero TIV"],
)
def test_location_files_the_kernel_cannot_read_are_refused_at_upload(
    api: Call, content: bytes, names: list[str]
) -> None:
    portfolio = api("POST", "/v2/portfolios/", json={"name": "exposure"}).json()["id"]
    before = api("GET", f"/v2/portfolios/{portfolio}/").content
    response = api(
        "POST",
        f"/v2/portfolios/{portfolio}/location_file/",
        files={"file": ("loc.csv", content, "text/csv")},
    )
    assert response.status_code == 400, response.text
    assert list(response.json()) == ["file"]
    reason = response.json()["file"][0]
    assert all(name in reason for name in names), reason
    assert api("GET", f"/v2/portfolios/{portfolio}/").content == before


def test_generate_inputs_refuses_a_file_without_a_tiv_the_models_lookup_keys(
    api: Call, model_id: int, redis: Redis
) -> None:
    """OED makes ContentsTIV optional and the upload takes the file, but the model keys
    contents: oasislmf would end in KeyError 'ContentsTIV'. Refused, nothing queued."""
    api(
        "POST",
        f"/v2/models/{model_id}/settings/",
        json={"lookup_settings": {"supported_coverage_types": [1, 3, 4]}},
    )
    portfolio = api("POST", "/v2/portfolios/", json={"name": "no contents"}).json()["id"]
    uploaded = api(
        "POST",
        f"/v2/portfolios/{portfolio}/location_file/",
        files={"file": ("loc.csv", without_column(LOCATIONS, "ContentsTIV"), "text/csv")},
    )
    assert uploaded.status_code == 200, uploaded.text
    analysis = api(
        "POST", "/v2/analyses/", json={"name": "a", "portfolio": portfolio, "model": model_id}
    ).json()
    before = api("GET", f"/v2/analyses/{analysis['id']}/").content
    for action in ("generate_inputs", "generate_and_run"):
        response = api("POST", f"/v2/analyses/{analysis['id']}/{action}/")
        assert response.status_code == 400, response.text
        if action == "generate_inputs":
            assert list(response.json()) == ["location_file"]
            reason = response.json()["location_file"][0]
            assert "ContentsTIV" in reason and "coverage type 3" in reason, reason
    assert api("GET", f"/v2/analyses/{analysis['id']}/").content == before
    queue = api("GET", f"/v2/models/{model_id}/").json()["queue_name"]
    assert sum(redis.llen(name) for name in queue_lists(queue)) == 0


def analysis_with_inputs(api: Call, model_id: int) -> int:
    portfolio = api("POST", "/v2/portfolios/", json={"name": "p"}).json()["id"]
    api(
        "POST",
        f"/v2/portfolios/{portfolio}/location_file/",
        files={"file": ("loc.csv", demo_locations(1).encode(), "text/csv")},
    )
    analysis = api(
        "POST", "/v2/analyses/", json={"name": "a", "portfolio": portfolio, "model": model_id}
    ).json()["id"]
    return int(analysis)


def test_run_with_dynamic_loss_chunking_needs_number_of_events(api: Call, model_id: int) -> None:
    analysis = analysis_with_inputs(api, model_id)
    api(
        "POST",
        f"/v2/models/{model_id}/settings/",
        json={
            "model_settings": {
                "event_set": {"default": "p", "options": [{"id": "p", "desc": "no count"}]}
            }
        },
    )
    api(
        "POST",
        f"/v2/models/{model_id}/chunking_configuration/",
        json={"loss_strategy": "DYNAMIC_CHUNKS"},
    )
    api("POST", f"/v2/analyses/{analysis}/settings/", json={"model_settings": {"event_set": "p"}})
    before = api("GET", f"/v2/analyses/{analysis}/").content
    response = api("POST", f"/v2/analyses/{analysis}/generate_and_run/")
    assert response.status_code == 400
    assert response.json() == {
        "event_set": ["Option 'number_of_events' is not set for event_set = 'p'."]
    }
    assert api("GET", f"/v2/analyses/{analysis}/").content == before


def test_actions_follow_the_status_machine(api: Call, model_id: int) -> None:
    analysis = analysis_with_inputs(api, model_id)
    response = api("POST", f"/v2/analyses/{analysis}/run/")
    assert response.status_code == 400
    assert "needs one of: READY" in response.json()["status"][0]
    assert api("POST", f"/v2/analyses/{analysis}/cancel/").status_code == 400
    assert (
        api("POST", f"/v2/analyses/{analysis}/generate_inputs/").json()["status"]
        == "INPUTS_GENERATION_QUEUED"
    )
    refused = api("POST", f"/v2/analyses/{analysis}/generate_inputs/")
    assert refused.status_code == 400
    assert "INPUTS_GENERATION_QUEUED" in refused.json()["status"][0]
    cancelled = api("POST", f"/v2/analyses/{analysis}/cancel/")
    assert cancelled.json()["status"] == "INPUTS_GENERATION_CANCELLED"


def test_an_analysis_must_name_existing_things(api: Call, model_id: int) -> None:
    response = api(
        "POST", "/v2/analyses/", json={"name": "x", "portfolio": 999999, "model": model_id}
    )
    assert response.status_code == 400
    assert "portfolio" in response.json()
    response = api(
        "POST", "/v2/analyses/", json={"name": "x", "portfolio": 1, "model": 1, "priority": 11}
    )
    assert response.status_code == 400
    assert "priority" in response.json()
