"""`oasis-autoscaler manifests platform`: an existing OasisPlatform's worker Deployments (as
`kubectl get deployments -o json` lists them) -> one valid ScaledObject each."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.main import main
from cli.manifests.generator import MODEL_KEY, worker_manifests
from cli.manifests.platform import platform_specs
from cli.manifests.worker_spec import WorkerSpec
from tests.support.kube_manifests import validate

TEMPLATE = WorkerSpec("supplier", "model", "1", max_replicas=4)


def deployment(name: str, namespace: str | None = "oasis", **labels: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": labels}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata}


def worker(name: str, supplier: str, model: str, version: str, **labels: str) -> dict[str, Any]:
    return deployment(
        name,
        **{
            "oasislmf/type": "worker",
            "oasislmf/supplier-id": supplier,
            "oasislmf/model-id": model,
            "oasislmf/model-version-id": version,
            **labels,
        },
    )


def listing(*items: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "List", "items": list(items)}


CASES = [
    pytest.param(
        listing(worker("worker-oasislmf-piwind-1", "OasisLMF", "PiWind", "1")),
        [("worker-oasislmf-piwind-1", "OasisLMF-PiWind-1-v2", "oasis")],
        [],
        id="a v2 worker (no api-version label)",
    ),
    pytest.param(
        listing(
            worker("w-a", "OasisLMF", "PiWind", "1", **{"oasislmf/api-version": "v2"}),
            worker("w-b", "Acme", "Quake", "2", **{"oasislmf/api-version": "v1"}),
        ),
        [("w-a", "OasisLMF-PiWind-1-v2", "oasis"), ("w-b", "Acme-Quake-2", "oasis")],
        [],
        id="v2 and v1",
    ),
    pytest.param(
        listing(
            deployment("oasis-server", app="server"),
            worker("w-partial", "OasisLMF", "", "1"),
            {"kind": "Service", "metadata": {"name": "x"}},
        ),
        [],
        ["oasis-server", "w-partial", "x"],
        id="not workers: skipped",
    ),
    pytest.param(
        listing(worker("w-ns", "Oasis_LMF", "Pi.Wind", "1")),
        [("w-ns", "Oasis_LMF-Pi.Wind-1-v2", "oasis")],
        [],
        id="ids that are no DNS label: the Deployment names the objects",
    ),
]


@pytest.mark.parametrize(("given", "expected", "skipped"), CASES)
def test_platform_specs(
    given: dict[str, Any], expected: list[tuple[str, str, str]], skipped: list[str]
) -> None:
    specs, passed_over = platform_specs(given, TEMPLATE)
    assert [(s.deployment, s.queue, s.namespace) for s in specs] == expected
    assert [s.item for s in passed_over] == skipped
    for spec in specs:
        (scaled,) = worker_manifests(spec)
        validate(scaled)
        assert scaled["spec"]["scaleTargetRef"]["name"] == spec.deployment
        assert scaled["spec"]["triggers"][0]["metadata"][MODEL_KEY] == spec.queue
        assert scaled["spec"]["maxReplicaCount"] == 4


def test_a_deployment_without_namespace_takes_the_flags() -> None:
    item = worker("w", "S", "M", "1")
    del item["metadata"]["namespace"]
    (spec,), _ = platform_specs(listing(item), WorkerSpec("s", "m", "1", namespace="other"))
    assert spec.namespace == "other"
    assert spec.effective_scaler_address == "oasis-scaler.other.svc:9090"


def test_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "deployments.json"
    path.write_text(
        json.dumps(
            listing(
                worker("worker-oasislmf-piwind-1", "OasisLMF", "PiWind", "1"),
                deployment("oasis-server", app="server"),
            )
        )
    )
    assert main(["manifests", "platform", "--deployments", str(path), "--max", "4", "--tls"]) == 0
    captured = capsys.readouterr()
    docs = [d for d in yaml.safe_load_all(captured.out) if d]
    assert [d["kind"] for d in docs] == ["TriggerAuthentication", "ScaledObject"]
    assert "skipped oasis-server" in captured.err
    header = captured.out.splitlines()[0]
    assert "--deployment worker-oasislmf-piwind-1 --queue OasisLMF-PiWind-1-v2" in header


@pytest.mark.parametrize(
    ("content", "says"),
    [
        pytest.param("not json", "--deployments", id="not JSON"),
        pytest.param(json.dumps({"kind": "List"}), "not a list of Deployments", id="no items"),
        pytest.param(json.dumps(listing()), "no OasisPlatform worker", id="no worker"),
    ],
)
def test_bad_listings_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, says: str
) -> None:
    path = tmp_path / "deployments.json"
    path.write_text(content)
    with pytest.raises(SystemExit) as exited:
        main(["manifests", "platform", "--deployments", str(path)])
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and says in captured.err
