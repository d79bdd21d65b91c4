"""The kustomize base and overlays, rendered by kustomize and checked as a cluster would see them.

Every object of every build is validated (Kubernetes 1.33 strict, KEDA's CRD, structural schemas
for the other custom kinds); then the hardening of every pod, the probes, RBAC, network policies,
scraping, and the references between objects are checked one by one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.settings import ApiSettings
from cli.manifests.generator import WORKER_SERVICE_ACCOUNT
from scaler.settings import ScalerSettings
from tests.support.kube_manifests import pod_problems, pod_specs, render, validate
from worker.settings import WorkerSettings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"


def _builds() -> list[str]:
    """Every kustomization under manifests/ but components (built inside the overlays)."""
    found = []
    for path in sorted(MANIFESTS.rglob("kustomization.yaml")):
        if yaml.safe_load(path.read_text()).get("kind") != "Component":
            found.append(str(path.parent.relative_to(MANIFESTS)))
    return found


BUILDS = _builds()
OVERLAYS = ["overlays/dev", "overlays/production", "overlays/examples"]
Doc = dict[str, Any]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Doc]]:
    return {build: render(MANIFESTS / build) for build in BUILDS}


def find(docs: list[Doc], kind: str, name: str) -> Doc:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def containers(docs: list[Doc]) -> Iterator[tuple[str, Doc, Doc]]:
    for where, pod in pod_specs(docs):
        for container in pod["containers"]:
            yield where, pod, container


def test_the_known_builds_are_found() -> None:
    known = {"base", "monitoring", "models/piwind", "models/piwind-tls", *OVERLAYS}
    assert known <= set(BUILDS)


@pytest.mark.parametrize("build", BUILDS)
def test_every_object_is_valid(rendered: dict[str, list[Doc]], build: str) -> None:
    docs = rendered[build]
    assert docs
    for doc in docs:
        validate(doc)
    names = [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs]
    assert len(names) == len(set(names)), "an object is defined twice"


@pytest.mark.parametrize("build", OVERLAYS)
def test_everything_lives_in_one_namespace(rendered: dict[str, list[Doc]], build: str) -> None:
    namespaces = {
        d["metadata"].get("namespace") for d in rendered[build] if d["kind"] != "Namespace"
    }
    assert namespaces == {"oasis"}
    namespace = find(rendered[build], "Namespace", "oasis")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("build", OVERLAYS)
def test_every_pod_is_hardened(rendered: dict[str, list[Doc]], build: str) -> None:
    pods = dict(pod_specs(rendered[build]))
    assert pods
    problems = {where: pod_problems(pod) for where, pod in pods.items()}
    assert {where: p for where, p in problems.items() if p} == {}


# --- the services' own settings --------------------------------------------------------------

SETTINGS = {"api": ApiSettings, "scaler": ScalerSettings, "worker": WorkerSettings}
PREFIXES = {
    "api": "OASIS_AUTOSCALER_",
    "scaler": "OASIS_AUTOSCALER_SCALER_",
    "worker": "OASIS_AUTOSCALER_",
}


@pytest.mark.parametrize("build", OVERLAYS)
def test_env_names_are_settings_of_the_service(rendered: dict[str, list[Doc]], build: str) -> None:
    seen = set()
    for where, _, container in containers(rendered[build]):
        command = container.get("command", [])
        if command != ["oasis-autoscaler"]:
            continue
        service = container["args"][0]
        seen.add(service)
        prefix = PREFIXES[service]
        fields = {prefix + name.upper() for name in SETTINGS[service].model_fields}
        names = {item["name"] for item in container.get("env", [])}
        assert names - {"HOME"} <= fields, f"{where}: {sorted(names - fields - {'HOME'})}"
        assert not container.get("envFrom"), "every variable is named where it is used"
    assert {"api", "scaler"} <= seen


@pytest.mark.parametrize("build", OVERLAYS)
def test_oasis_containers_use_the_overlays_image(
    rendered: dict[str, list[Doc]], build: str
) -> None:
    expected = {
        "overlays/dev": "oasis-autoscaler:dev",
        "overlays/production": "registry.example.com/oasis/oasis-autoscaler:0.1.0",
        "overlays/examples": "registry.example.com/oasis/oasis-autoscaler:0.1.0",
    }[build]
    images = {
        c["image"]
        for _, _, c in containers(rendered[build])
        if c.get("command") == ["oasis-autoscaler"]
    }
    assert images == {expected}


# --- the API and the scaler --------------------------------------------------------------------


@pytest.mark.parametrize("build", OVERLAYS)
def test_api(rendered: dict[str, list[Doc]], build: str) -> None:
    docs = rendered[build]
    pod = find(docs, "Deployment", "oasis-api")["spec"]["template"]["spec"]
    (api,) = pod["containers"]
    assert api["args"][0] == "api"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert api[probe]["httpGet"] == {"path": "/healthcheck/", "port": "http"}
    assert {"name": "http", "containerPort": 8000} in api["ports"]
    env = {e["name"]: e for e in api["env"]}
    assert env["OASIS_AUTOSCALER_HOST"]["value"] == "0.0.0.0"
    assert env["OASIS_AUTOSCALER_DATA_DIR"]["value"] == "/data"
    service = find(docs, "Service", "oasis-api")
    assert service["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http"}]


@pytest.mark.parametrize("build", OVERLAYS)
def test_scaler(rendered: dict[str, list[Doc]], build: str) -> None:
    docs = rendered[build]
    deployment = find(docs, "Deployment", "oasis-scaler")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    (scaler,) = pod["containers"]
    assert scaler["args"] == ["scaler"]
    env = {e["name"]: e.get("value") for e in scaler["env"]}
    assert env["OASIS_AUTOSCALER_SCALER_HOST"] == "0.0.0.0"
    assert env["OASIS_AUTOSCALER_SCALER_PORT"] == "9090"
    assert env["OASIS_AUTOSCALER_SCALER_METRICS_PORT"] == "9091"
    assert env["OASIS_AUTOSCALER_SCALER_SCRAPE_TARGETS"] == "http://oasis-api:8000/metrics"
    # Liveness is the process, not the gRPC health, which a stale source turns NOT_SERVING.
    assert scaler["livenessProbe"]["httpGet"]["port"] == "metrics"
    tls = build != "overlays/dev"
    if tls:
        # The kubelet's gRPC probe cannot present a client certificate.
        assert scaler["readinessProbe"]["tcpSocket"] == {"port": "grpc"}
        mounts = {m["name"]: m["mountPath"] for m in scaler["volumeMounts"]}
        secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        assert secrets == {"tls": "oasis-scaler-tls"}
        for name in ("CERT_FILE", "KEY_FILE", "CLIENT_CA_FILE"):
            assert env[f"OASIS_AUTOSCALER_SCALER_TLS_{name}"].startswith(mounts["tls"] + "/")
    else:
        assert scaler["readinessProbe"]["grpc"] == {"port": 9090}
        assert not any(name.startswith("OASIS_AUTOSCALER_SCALER_TLS") for name in env)
    service = find(docs, "Service", "oasis-scaler")
    # Headless: KEDA's gRPC client balances over every ready replica.
    assert service["spec"]["clusterIP"] == "None"
    assert {(p["name"], p["port"]) for p in service["spec"]["ports"]} == {
        ("grpc", 9090),
        ("metrics", 9091),
    }
    budget = find(docs, "PodDisruptionBudget", "oasis-scaler")
    assert budget["spec"]["minAvailable"] == 1
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()


# --- identities -------------------------------------------------------------------------------


@pytest.mark.parametrize("build", OVERLAYS)
def test_only_workers_reach_the_kubernetes_api(rendered: dict[str, list[Doc]], build: str) -> None:
    docs = rendered[build]
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    for name in ("oasis-api", "oasis-scaler"):
        assert find(docs, "ServiceAccount", name)["automountServiceAccountToken"] is False
        pod = find(docs, "Deployment", name)["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == name
        assert pod["automountServiceAccountToken"] is False
    for where, pod in pod_specs(docs):
        if pod.get("serviceAccountName") != WORKER_SERVICE_ACCOUNT:
            assert pod.get("automountServiceAccountToken") is False, where
    roles = [d for d in docs if d["kind"] == "Role"]
    assert [r["rules"] for r in roles] == [
        [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "patch"]}]
    ]
    (binding,) = [d for d in docs if d["kind"] == "RoleBinding"]
    assert binding["roleRef"]["name"] == roles[0]["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": WORKER_SERVICE_ACCOUNT, "namespace": "oasis"}
    ]


def test_workers_run_as_the_worker_account(rendered: dict[str, list[Doc]]) -> None:
    for build in ("overlays/dev", "overlays/examples"):
        docs = rendered[build]
        workers = [
            d
            for d in docs
            if d["kind"] == "Deployment" and d["metadata"]["name"].startswith("worker-")
        ]
        assert workers
        for worker in workers:
            pod = worker["spec"]["template"]["spec"]
            assert pod["serviceAccountName"] == WORKER_SERVICE_ACCOUNT
            assert find(docs, "ServiceAccount", WORKER_SERVICE_ACCOUNT)
            claims = {
                v["persistentVolumeClaim"]["claimName"]
                for v in pod["volumes"]
                if "persistentVolumeClaim" in v
            }
            for claim in claims:
                find(docs, "PersistentVolumeClaim", claim)


# --- references ----------------------------------------------------------------------------


def secret_refs(docs: list[Doc]) -> set[tuple[str, str]]:
    refs = set()
    for _, pod, container in containers(docs):
        for item in container.get("env", []):
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                refs.add((ref["name"], ref["key"]))
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                refs.add((volume["secret"]["secretName"], "*"))
    for doc in docs:
        for ref in doc.get("spec", {}).get("secretTargetRef", []):
            refs.add((ref["name"], ref["key"]))
    return refs


def test_dev_makes_every_secret_it_uses(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["overlays/dev"]
    made = {d["metadata"]["name"]: set(d.get("data", {})) for d in docs if d["kind"] == "Secret"}
    for name, key in secret_refs(docs):
        assert name in made, f"Secret {name} is used and not made"
        assert key in made[name], f"Secret {name} has no key {key}"


def test_dev_broker_keeps_its_queues_across_a_restart(rendered: dict[str, list[Doc]]) -> None:
    """Redis persists to an append-only file on the pod's volume (a crash or OOM kill restarts
    the container in the same pod, with its queues)."""
    pod = find(rendered["overlays/dev"], "Deployment", "redis")["spec"]["template"]["spec"]
    (redis,) = pod["containers"]
    args = redis["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--appendfsync") + 1] in ("everysec", "always")
    mounts = {m["mountPath"]: m["name"] for m in redis["volumeMounts"]}
    # The official image's working folder, where Redis writes its files.
    assert "/data" in mounts
    assert any(v["name"] == mounts["/data"] for v in pod["volumes"])


def test_production_uses_only_the_documented_secrets(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["overlays/examples"]
    assert not [d for d in docs if d["kind"] == "Secret"], "production keeps no secret in git"
    assert secret_refs(docs) == {
        ("oasis-database", "url"),
        ("oasis-redis", "url"),
        ("oasis-api", "admin-password"),
        ("oasis-api", "jwt-secret"),
        ("oasis-scaler-tls", "*"),
        ("oasis-scaler-client-tls", "ca.crt"),
        ("oasis-scaler-client-tls", "tls.crt"),
        ("oasis-scaler-client-tls", "tls.key"),
    }
    comment = (MANIFESTS / "overlays/production/kustomization.yaml").read_text()
    for name, _ in secret_refs(docs):
        assert name in comment, f"the production overlay does not tell the operator about {name}"


@pytest.mark.parametrize("build", OVERLAYS)
def test_scaled_objects_target_their_workers(rendered: dict[str, list[Doc]], build: str) -> None:
    docs = rendered[build]
    for scaled in (d for d in docs if d["kind"] == "ScaledObject"):
        target = find(docs, "Deployment", scaled["spec"]["scaleTargetRef"]["name"])
        (trigger,) = scaled["spec"]["triggers"]
        queue = {
            e["name"]: e.get("value")
            for e in target["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert trigger["metadata"]["model"] == queue["OASIS_AUTOSCALER_QUEUE"]
        host, port = trigger["metadata"]["scalerAddress"].rsplit(":", 1)
        assert host == "oasis-scaler.oasis.svc" and port == "9090"
        find(docs, "Service", "oasis-scaler")
        if "authenticationRef" in trigger:
            find(docs, "TriggerAuthentication", trigger["authenticationRef"]["name"])
            assert trigger["metadata"]["enableTLS"] == "true"
    assert [d for d in docs if d["kind"] == "ScaledObject"] or build == "overlays/production"


# --- network -------------------------------------------------------------------------------


def policies_for(docs: list[Doc], labels: dict[str, str]) -> list[Doc]:
    return [
        d
        for d in docs
        if d["kind"] == "NetworkPolicy"
        and d["spec"]["podSelector"].get("matchLabels", {}).items() <= labels.items()
    ]


def allowed(policies: list[Doc]) -> list[tuple[int, list[Doc] | None]]:
    """(port, peers) of every ingress rule; None = from anywhere."""
    rules = []
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            for port in rule.get("ports", [{"port": None}]):
                rules.append((port["port"], rule.get("from")))
    return rules


@pytest.mark.parametrize("build", OVERLAYS)
def test_network_policies(rendered: dict[str, list[Doc]], build: str) -> None:
    docs = rendered[build]
    deny = find(docs, "NetworkPolicy", "default-deny-ingress")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    scaler = allowed(policies_for(docs, {"app.kubernetes.io/name": "oasis-scaler"}))
    keda = [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "keda-operator"}},
        }
    ]
    prometheus = [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
        }
    ]
    assert sorted(scaler, key=lambda r: r[0] or 0) == [(9090, keda), (9091, prometheus)]
    api = allowed(policies_for(docs, {"app.kubernetes.io/name": "oasis-api"}))
    assert api == [(8000, None)]
    workers = allowed(policies_for(docs, {"app.kubernetes.io/name": "oasis-worker"}))
    assert workers == [], "nothing calls a worker"


def test_dev_broker_and_database_take_only_oasis_pods(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["overlays/dev"]
    for name, port in (("redis", 6379), ("postgres", 5432)):
        rules = allowed(policies_for(docs, {"app.kubernetes.io/name": name}))
        peers = [
            {"podSelector": {"matchLabels": {"app.kubernetes.io/name": n}}}
            for n in ("oasis-api", "oasis-worker")
        ]
        assert rules == [(port, peers)]


# --- monitoring -------------------------------------------------------------------------------


@pytest.mark.parametrize("build", OVERLAYS)
def test_service_monitors_reach_named_ports(rendered: dict[str, list[Doc]], build: str) -> None:
    docs = rendered[build]
    monitors = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ServiceMonitor"}
    assert set(monitors) == {"oasis-api", "oasis-scaler"}
    services = [d for d in docs if d["kind"] == "Service"]
    for monitor in monitors.values():
        selector = monitor["spec"]["selector"]["matchLabels"]
        (service,) = [s for s in services if selector.items() <= s["metadata"]["labels"].items()]
        ports = {p["name"] for p in service["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in ports
            assert endpoint["path"] == "/metrics"


@pytest.mark.parametrize("build", OVERLAYS)
def test_monitoring_is_included(rendered: dict[str, list[Doc]], build: str) -> None:
    docs = rendered[build]
    monitoring = rendered["monitoring"]
    assert [d for d in monitoring if d["kind"] == "PrometheusRule"]
    ours = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {(d["kind"], d["metadata"]["name"]) for d in monitoring} <= ours
    for doc in docs:
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"].startswith("oasis-dashboard"):
            assert doc["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_api_probe_path_is_a_route(tmp_path: Path) -> None:
    from api.app import create_app

    app = create_app(ApiSettings(data_dir=tmp_path, admin_password="probe-test-password"))
    response = app.test_client().get("/healthcheck/")
    assert response.status_code == 200
