"""The build for an existing OasisPlatform (manifests/oasisplatform), rendered by kustomize.

Every object is validated with the other builds (tests/integration/test_kustomize.py finds this
one too); here: it adds the exporter, the scaler scraping it and ScaledObjects for existing
worker Deployments, and touches nothing of the platform (no namespace, no API, no workers, no
policy that selects the platform's pods).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from api.exporter.settings import ENV_PREFIX, ExporterSettings
from tests.support.kube_manifests import pod_problems, pod_specs, render

pytestmark = pytest.mark.integration
MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
Doc = dict[str, Any]


@pytest.fixture(scope="module")
def docs() -> list[Doc]:
    return render(MANIFESTS / "oasisplatform")


def find(docs: list[Doc], kind: str, name: str) -> Doc:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def test_nothing_of_the_platform_is_made_or_fenced(docs: list[Doc]) -> None:
    kinds = {d["kind"] for d in docs}
    assert "Namespace" not in kinds, "the platform's namespace exists already"
    deployments = {d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"}
    assert deployments == {"oasis-exporter", "oasis-scaler"}
    for policy in (d for d in docs if d["kind"] == "NetworkPolicy"):
        selected = policy["spec"]["podSelector"].get("matchLabels", {})
        assert selected.get("app.kubernetes.io/name") in ("oasis-exporter", "oasis-scaler"), (
            f"{policy['metadata']['name']} selects pods of the platform"
        )
    assert {d["metadata"].get("namespace") for d in docs} == {"oasis"}


def test_every_pod_is_hardened(docs: list[Doc]) -> None:
    problems = {where: pod_problems(pod) for where, pod in pod_specs(docs)}
    assert {where: p for where, p in problems.items() if p} == {}


def test_the_exporter(docs: list[Doc]) -> None:
    pod = find(docs, "Deployment", "oasis-exporter")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["exporter"]
    env = {e["name"]: e for e in container["env"]}
    fields = {ENV_PREFIX + name.upper() for name in ExporterSettings.model_fields}
    assert set(env) - {"HOME"} <= fields
    # The password is a mounted file, never a variable's value.
    assert f"{ENV_PREFIX}PASSWORD" not in env
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {"platform-credentials": "oasis-platform-exporter"}
    password_file = env[f"{ENV_PREFIX}PASSWORD_FILE"]["value"]
    assert password_file.startswith(mounts["platform-credentials"] + "/")
    username = env[f"{ENV_PREFIX}USERNAME"]["valueFrom"]["secretKeyRef"]
    assert username == {"name": "oasis-platform-exporter", "key": "username"}
    settings = ExporterSettings(
        **{
            name.removeprefix(ENV_PREFIX).lower(): item["value"]
            for name, item in env.items()
            if "value" in item and name.startswith(ENV_PREFIX)
        }
    )
    assert settings.effective_websocket_url == "ws://oasis-websocket:8001/ws/v2/queue-status/"
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}


def test_the_scaler_scrapes_the_exporter(docs: list[Doc]) -> None:
    scaler = find(docs, "Deployment", "oasis-scaler")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in scaler["env"]}
    service = find(docs, "Service", "oasis-exporter")
    (port,) = service["spec"]["ports"]
    expected = f"http://{service['metadata']['name']}:{port['port']}/metrics"
    assert env["OASIS_AUTOSCALER_SCALER_SCRAPE_TARGETS"] == expected
    container = find(docs, "Deployment", "oasis-exporter")["spec"]["template"]["spec"]
    ports = {p["name"]: p["containerPort"] for p in container["containers"][0]["ports"]}
    assert ports[port["targetPort"]] == port["port"]


def test_scaled_objects_target_existing_workers_by_their_v2_queue(docs: list[Doc]) -> None:
    scaled = [d for d in docs if d["kind"] == "ScaledObject"]
    assert scaled
    for doc in scaled:
        target = doc["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment"
        assert not [d for d in docs if d["metadata"]["name"] == target["name"] and d is not doc]
        (trigger,) = doc["spec"]["triggers"]
        assert trigger["metadata"]["model"].endswith("-v2")
        assert trigger["metadata"]["scalerAddress"] == "oasis-scaler.oasis.svc:9090"


def test_the_exporter_is_scraped_by_prometheus(docs: list[Doc]) -> None:
    monitors = {d["metadata"]["name"] for d in docs if d["kind"] == "ServiceMonitor"}
    assert monitors == {"oasis-exporter", "oasis-scaler"}
