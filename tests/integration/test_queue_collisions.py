"""Two models can never share a queue: no id may hold the `-` that joins them into its name.

`<supplier_id>-<model_id>-<version_id>` is ambiguous only when an id holds `-` (`a-b`,`c` and
`a`,`b-c` both spell `a-b-c`); the API refuses such ids, on creation and update, naming the
field and changing nothing. The same ids exactly are refused as a duplicate.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.integration.conftest import Call

pytestmark = pytest.mark.integration

IDS = ("supplier_id", "model_id", "version_id")


def models(api: Call) -> Any:
    response = api("GET", "/v2/models/")
    assert response.status_code == 200
    return response.json()


def test_ids_that_would_spell_another_models_queue_are_refused(api: Call) -> None:
    tag = uuid.uuid4().hex[:8]
    created = api(
        "POST", "/v2/models/", json={"supplier_id": tag, "model_id": "b", "version_id": "c"}
    )
    assert created.status_code == 201
    assert created.json()["queue_name"] == f"{tag}-b-c"
    before = models(api)
    # Each spells the queue name f"{tag}-b-c" with a `-` inside one of the ids.
    for body, field in (
        ({"supplier_id": f"{tag}-b", "model_id": "c", "version_id": "1"}, "supplier_id"),
        ({"supplier_id": tag, "model_id": "b-c", "version_id": "1"}, "model_id"),
        ({"supplier_id": tag, "model_id": "b", "version_id": "c-1"}, "version_id"),
    ):
        response = api("POST", "/v2/models/", json=body)
        assert response.status_code == 400, body
        assert set(response.json()) == {field}
        assert "pattern" in response.json()[field][0]
    assert models(api) == before


def test_an_update_to_an_ambiguous_id_is_refused_and_changes_nothing(api: Call) -> None:
    tag = uuid.uuid4().hex[:8]
    model = api(
        "POST", "/v2/models/", json={"supplier_id": tag, "model_id": "m", "version_id": "1"}
    )
    assert model.status_code == 201
    path = f"/v2/models/{model.json()['id']}/"
    before = api("GET", path).content
    response = api("PUT", path, json={"supplier_id": tag, "model_id": "m-1", "version_id": "2"})
    assert response.status_code == 400
    assert set(response.json()) == {"model_id"}
    assert api("GET", path).content == before


def test_an_update_to_another_models_ids_is_refused_and_changes_nothing(api: Call) -> None:
    tag = uuid.uuid4().hex[:8]
    first, second = (
        api("POST", "/v2/models/", json={"supplier_id": tag, "model_id": m, "version_id": "1"})
        for m in ("m", "n")
    )
    assert first.status_code == second.status_code == 201
    path = f"/v2/models/{second.json()['id']}/"
    before = models(api)
    response = api("PUT", path, json={k: first.json()[k] for k in IDS})
    assert response.status_code == 400
    assert "already exists" in response.json()["version_id"][0]
    assert models(api) == before
