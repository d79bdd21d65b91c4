"""manifests/monitoring: every dashboard is shipped by the kustomization, with the sidecar's
label, and is built the same way (a model variable, the data source chosen by a variable).

What the queries return is checked against a real Prometheus in
tests/integration/test_monitoring_queries.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

MONITORING = Path(__file__).resolve().parents[2] / "manifests" / "monitoring"
DASHBOARDS = sorted((MONITORING / "dashboards").glob("*.json"))
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def kustomization() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    return document


def test_the_kustomization_ships_every_dashboard_and_the_rules() -> None:
    document = kustomization()
    assert document["resources"] == ["prometheus-rules.yaml"]
    assert document["generatorOptions"]["labels"] == {"grafana_dashboard": "1"}
    files = [file for generator in document["configMapGenerator"] for file in generator["files"]]
    assert sorted(files) == [f"dashboards/{path.name}" for path in DASHBOARDS]
    assert len(DASHBOARDS) >= 2


@pytest.mark.parametrize("path", DASHBOARDS, ids=[path.stem for path in DASHBOARDS])
def test_a_dashboard(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["model"]["multi"] and variables["model"]["includeAll"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_dashboard_uids_are_unique() -> None:
    uids = [json.loads(path.read_text())["uid"] for path in DASHBOARDS]
    assert len(uids) == len(set(uids))
