"""`oasis-autoscaler manifests model`: a model's workers and ScaledObject, field by field.

Every object printed is validated as the cluster would: the Deployment against Kubernetes 1.33's
schemas (strict), the ScaledObject against KEDA v2.20.2's CRD, the TriggerAuthentication
structurally (tests/support/kube_manifests.py).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from cli.commands import manifests as manifests_command
from cli.main import main
from cli.manifests.generator import MODEL_KEY, worker_manifests
from cli.manifests.quantities import parse_quantity
from cli.manifests.worker_spec import (
    DEFAULT_GRACE_SECONDS,
    SCALER_GRPC_PORT,
    Resources,
    WorkerSpec,
    check,
)
from scaler.settings import ScalerSettings
from tests.support.kube_manifests import (
    pod_problems,
    validate,
    validate_builtin,
    validate_scaled_object,
)
from worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(
    p for p in (ROOT / "manifests" / "models").glob("*/*.yaml") if p.name != "kustomization.yaml"
)
PIWIND = WorkerSpec("OasisLMF", "PiWind", "1", max_replicas=20)

Doc = dict[str, Any]


def objects(spec: WorkerSpec) -> dict[str, Doc]:
    return {doc["kind"]: doc for doc in worker_manifests(spec)}


def container(spec: WorkerSpec) -> Doc:
    pod = objects(spec)["Deployment"]["spec"]["template"]["spec"]
    (only,) = pod["containers"]
    result: Doc = only
    return result


def env(spec: WorkerSpec) -> dict[str, Doc]:
    return {item["name"]: item for item in container(spec)["env"]}


# --- agreement with the services ----------------------------------------------------------


def test_the_trigger_names_the_model_with_the_scalers_key() -> None:
    from scaler.servicer import MODEL_KEY as SERVICER_KEY

    assert MODEL_KEY == SERVICER_KEY


def test_default_address_and_grace_follow_the_services_settings() -> None:
    assert ScalerSettings.model_fields["port"].default == SCALER_GRPC_PORT
    visibility = WorkerSettings.model_fields["visibility_timeout_seconds"].default
    assert visibility == DEFAULT_GRACE_SECONDS == 6 * 3600


@pytest.mark.parametrize(
    "module", ["cli.manifests.generator", "cli.manifests.worker_spec", "cli.manifests.quantities"]
)
def test_the_generator_is_pure(module: str) -> None:
    forbidden = ["flask", "celery", "grpc", "redis", "sqlalchemy", "kombu", "kubernetes"]
    probe = f"import sys, {module}; print(sorted(m for m in {forbidden!r} if m in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()
    assert loaded == "[]"


def test_worker_env_names_are_worker_settings() -> None:
    fields = {f"OASIS_AUTOSCALER_{name.upper()}" for name in WorkerSettings.model_fields}
    spec = replace(PIWIND, model_data_dir="/data/models/piwind")
    names = set(env(spec))
    assert names - {"HOME"} <= fields, names - fields
    assert {"OASIS_AUTOSCALER_POD_NAME", "OASIS_AUTOSCALER_POD_NAMESPACE"} <= names


# --- the KEDA contract ----------------------------------------------------------------------


def test_scaled_object_contract() -> None:
    scaled = objects(PIWIND)["ScaledObject"]
    spec = scaled["spec"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "external-push"
    assert trigger["metricType"] == "AverageValue"
    assert trigger["metadata"] == {
        "scalerAddress": "oasis-scaler.oasis.svc:9090",
        "model": "OasisLMF-PiWind-1",
    }
    assert "authenticationRef" not in trigger
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "worker-oasislmf-piwind-1",
    }
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (0, 20)
    assert (spec["pollingInterval"], spec["cooldownPeriod"]) == (10, 10)
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    for direction in ("scaleUp", "scaleDown"):
        assert parse_quantity(str(behavior[direction]["tolerance"])) == 0
        assert behavior[direction]["policies"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 0
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
    # One step up to the cap: the scaler's count is reached at once.
    assert behavior["scaleUp"]["policies"] == [{"type": "Pods", "value": 20, "periodSeconds": 15}]
    assert spec["fallback"]["behavior"] == "currentReplicas"
    assert scaled["metadata"]["name"] == "worker-oasislmf-piwind-1"
    assert scaled["metadata"]["namespace"] == "oasis"


def test_tls_adds_enable_tls_and_a_trigger_authentication() -> None:
    spec = replace(PIWIND, tls=True, tls_secret="keda-client")
    made = worker_manifests(spec)
    assert [doc["kind"] for doc in made] == ["Deployment", "TriggerAuthentication", "ScaledObject"]
    auth, scaled = made[1], made[2]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["metadata"]["enableTLS"] == "true"
    assert trigger["authenticationRef"] == {
        "kind": "TriggerAuthentication",
        "name": auth["metadata"]["name"],
    }
    refs = {ref["parameter"]: (ref["name"], ref["key"]) for ref in auth["spec"]["secretTargetRef"]}
    assert refs == {
        "caCert": ("keda-client", "ca.crt"),
        "tlsClientCert": ("keda-client", "tls.crt"),
        "tlsClientKey": ("keda-client", "tls.key"),
    }
    assert auth["metadata"]["namespace"] == scaled["metadata"]["namespace"]


def test_fallback_replicas_make_a_static_fallback() -> None:
    fallback = objects(replace(PIWIND, fallback_replicas=2))["ScaledObject"]["spec"]["fallback"]
    assert fallback == {"failureThreshold": 3, "replicas": 2, "behavior": "static"}


def test_namespace_and_address_flags() -> None:
    spec = replace(PIWIND, namespace="models", min_replicas=2, max_replicas=3)
    scaled = objects(spec)["ScaledObject"]
    assert scaled["spec"]["triggers"][0]["metadata"]["scalerAddress"] == (
        "oasis-scaler.models.svc:9090"
    )
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (2, 3)
    moved = objects(replace(spec, scaler_address="scaler.example:443"))["ScaledObject"]
    assert moved["spec"]["triggers"][0]["metadata"]["scalerAddress"] == "scaler.example:443"


# --- the worker Deployment -----------------------------------------------------------------


def test_worker_deployment() -> None:
    deployment = objects(PIWIND)["Deployment"]
    assert "replicas" not in deployment["spec"]  # the HPA owns it
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "oasis-worker"
    assert pod["terminationGracePeriodSeconds"] == 6 * 3600
    assert pod_problems(pod) == []
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert claims == ["oasis-data"]
    (worker,) = pod["containers"]
    assert {"name": "data", "mountPath": "/data"} in worker["volumeMounts"]
    assert worker["command"] == ["oasis-autoscaler"]
    assert worker["args"][0] == "worker"
    variables = env(PIWIND)
    assert variables["OASIS_AUTOSCALER_QUEUE"]["value"] == "OasisLMF-PiWind-1"
    assert variables["OASIS_AUTOSCALER_POD_NAME"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.name"}
    }
    assert variables["OASIS_AUTOSCALER_POD_NAMESPACE"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }
    # Nothing is redelivered while its worker may still be finishing it.
    assert variables["OASIS_AUTOSCALER_VISIBILITY_TIMEOUT_SECONDS"]["value"] == str(6 * 3600)
    assert "OASIS_AUTOSCALER_MODEL_DATA_DIR" not in variables
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_worker_flags_reach_the_pod() -> None:
    spec = replace(
        PIWIND,
        grace_period_seconds=900,
        concurrency=4,
        model_data_dir="/data/models/piwind",
        image="registry.example/oasis:1",
        resources=Resources("500m", "4", "1Gi", "8Gi"),
    )
    pod = objects(spec)["Deployment"]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 900
    variables = env(spec)
    assert variables["OASIS_AUTOSCALER_CONCURRENCY"]["value"] == "4"
    assert variables["OASIS_AUTOSCALER_MODEL_DATA_DIR"]["value"] == "/data/models/piwind"
    assert variables["OASIS_AUTOSCALER_VISIBILITY_TIMEOUT_SECONDS"]["value"] == "900"
    assert container(spec)["image"] == "registry.example/oasis:1"
    assert container(spec)["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"cpu": "4", "memory": "8Gi"},
    }


def test_probes_ping_this_pods_worker_node() -> None:
    worker = container(PIWIND)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        command = worker[probe]["exec"]["command"]
        assert command[:2] == ["sh", "-c"]
        # The node name of worker/cli.py in a pod: <queue>@<pod name>.
        assert '--destination "$OASIS_AUTOSCALER_QUEUE@$OASIS_AUTOSCALER_POD_NAME"' in command[2]
    # A long silence only restarts a worker: a busy one answers pings.
    liveness = worker["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 600


@pytest.mark.parametrize(
    "spec",
    [PIWIND, replace(PIWIND, tls=True), replace(PIWIND, fallback_replicas=0, min_replicas=1)],
    ids=["plain", "tls", "fallback"],
)
def test_every_object_is_valid(spec: WorkerSpec) -> None:
    for doc in worker_manifests(spec):
        validate(doc)


PLATFORM_PIWIND = replace(
    PIWIND, deployment="worker-oasislmf-piwind-1", queue_name="OasisLMF-PiWind-1-v2"
)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_an_existing_deployment_gets_only_its_scaled_object(tls: bool) -> None:
    docs = worker_manifests(replace(PLATFORM_PIWIND, tls=tls))
    kinds = [d["kind"] for d in docs]
    assert kinds == (["TriggerAuthentication", "ScaledObject"] if tls else ["ScaledObject"])
    scaled = docs[-1]
    assert scaled["metadata"]["name"] == "worker-oasislmf-piwind-1"
    assert scaled["spec"]["scaleTargetRef"]["name"] == "worker-oasislmf-piwind-1"
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["metadata"][MODEL_KEY] == "OasisLMF-PiWind-1-v2"
    for doc in docs:
        validate(doc)


# --- refusals -------------------------------------------------------------------------------

REFUSALS: list[tuple[str, WorkerSpec, str]] = [
    ("underscore", WorkerSpec("Oasis_LMF", "PiWind", "1"), "supplier"),
    ("dot in version", WorkerSpec("OasisLMF", "PiWind", "1.0"), "version"),
    ("empty model", WorkerSpec("OasisLMF", "", "1"), "model"),
    ("leading dash", WorkerSpec("-x", "PiWind", "1"), "supplier"),
    ("too long", WorkerSpec("s" * 30, "m" * 30, "1"), "model"),
    ("upper-case namespace", replace(PIWIND, namespace="Oasis"), "namespace"),
    ("min above max", replace(PIWIND, min_replicas=5, max_replicas=4), "min_replicas"),
    ("negative min", replace(PIWIND, min_replicas=-1), "min_replicas"),
    ("max zero", replace(PIWIND, max_replicas=0), "max_replicas"),
    ("max over int32", replace(PIWIND, max_replicas=2**31), "max_replicas"),
    ("negative grace", replace(PIWIND, grace_period_seconds=-1), "grace_period_seconds"),
    ("polling zero", replace(PIWIND, polling_interval_seconds=0), "polling_interval_seconds"),
    (
        "window over an hour",
        replace(PIWIND, scale_down_window_seconds=3601),
        "scale_down_window_seconds",
    ),
    ("no concurrency", replace(PIWIND, concurrency=0), "concurrency"),
    ("negative fallback", replace(PIWIND, fallback_replicas=-1), "fallback_replicas"),
    ("address without port", replace(PIWIND, scaler_address="scaler"), "scaler_address"),
    ("port too high", replace(PIWIND, scaler_address="scaler:70000"), "scaler_address"),
    ("image with a space", replace(PIWIND, image="oasis autoscaler"), "image"),
    ("bad secret name", replace(PIWIND, tls=True, tls_secret="Client_TLS"), "tls_secret"),
    ("relative model data", replace(PIWIND, model_data_dir="models/piwind"), "model_data_dir"),
    ("bad deployment name", replace(PIWIND, deployment="Worker_PiWind"), "deployment"),
    ("queue with a space", replace(PIWIND, queue_name="Oasis LMF"), "queue_name"),
    ("bad cpu", replace(PIWIND, resources=Resources(cpu_request="lots")), "resources.cpu_request"),
    (
        "zero memory",
        replace(PIWIND, resources=Resources(memory_limit="0")),
        "resources.memory_limit",
    ),
    (
        "request above limit",
        replace(PIWIND, resources=Resources(memory_request="8Gi", memory_limit="4Gi")),
        "resources.memory_request",
    ),
]


@pytest.mark.parametrize(("spec", "field"), [c[1:] for c in REFUSALS], ids=[c[0] for c in REFUSALS])
def test_refusals_name_the_field(spec: WorkerSpec, field: str) -> None:
    problems = check(spec)
    assert [p.field for p in problems] == [field]
    with pytest.raises(ValueError, match=field.split(".")[-1]):
        worker_manifests(spec)


def test_valid_edges_pass() -> None:
    edges = [
        replace(PIWIND, min_replicas=0, max_replicas=1),
        replace(PIWIND, min_replicas=2**31 - 1, max_replicas=2**31 - 1),
        replace(PIWIND, grace_period_seconds=0, cooldown_period_seconds=0),
        replace(PIWIND, scale_down_window_seconds=3600, scaler_address="[::1]:9090"),
        WorkerSpec("a", "b", "c" * 52),  # a 63-character name
    ]
    assert len(edges[-1].name) == 63
    for spec in edges:
        assert check(spec) == []
        validate_scaled_object(objects(spec)["ScaledObject"])


# --- properties -----------------------------------------------------------------------------

ID = st.from_regex(r"[A-Za-z0-9]([-A-Za-z0-9]{0,12}[A-Za-z0-9])?", fullmatch=True)
COUNT = st.integers(min_value=0, max_value=2**31 - 1)


@settings(max_examples=60, deadline=None)
@given(ID, ID, ID, COUNT, COUNT, st.booleans())
def test_any_valid_model_gives_valid_objects(
    supplier: str, model: str, version: str, low: int, high: int, tls: bool
) -> None:
    low, high = sorted((low, max(high, 1)))
    spec = WorkerSpec(supplier, model, version, min_replicas=low, max_replicas=high, tls=tls)
    assert check(spec) == []
    made = {doc["kind"]: doc for doc in worker_manifests(spec)}
    scaled = made["ScaledObject"]
    validate_scaled_object(scaled)
    assert scaled["spec"]["triggers"][0]["metadata"]["model"] == f"{supplier}-{model}-{version}"
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (low, high)
    assert scaled["spec"]["scaleTargetRef"]["name"] == made["Deployment"]["metadata"]["name"]
    assert ("TriggerAuthentication" in made) == tls


@settings(max_examples=60, deadline=None)
@given(ID, st.integers(1, 2**31 - 2), st.integers(1, 2**31))
def test_min_above_max_is_always_refused(model: str, high: int, extra: int) -> None:
    low = min(high + extra, 2**31 - 1)
    problems = check(WorkerSpec("s", model, "1", min_replicas=low, max_replicas=high))
    assert [p.field for p in problems] == ["min_replicas"]


QUANTITIES = [
    ("500m", Decimal("0.5")),
    ("2", Decimal(2)),
    ("1.5", Decimal("1.5")),
    (".5", Decimal("0.5")),
    ("4Gi", Decimal(4 * 2**30)),
    ("2Ki", Decimal(2048)),
    ("1k", Decimal(1000)),
    ("3M", Decimal(3_000_000)),
    ("1e3", Decimal(1000)),
    ("1E-2", Decimal("0.01")),
    ("100n", Decimal("1E-7")),
    ("0", Decimal(0)),
]


@pytest.mark.parametrize(("text", "value"), QUANTITIES, ids=[q[0] for q in QUANTITIES])
def test_quantities(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "lots", "1 Gi", "1GB", "Gi", "1e", "--1", "1e999999999999"])
def test_not_quantities(text: str) -> None:
    assert parse_quantity(text) is None


@given(
    st.integers(min_value=0, max_value=10**12), st.sampled_from(["Ki", "Mi", "Gi", "m", "k", ""])
)
def test_quantity_suffixes_scale(number: int, suffix: str) -> None:
    scale = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "m": Decimal("0.001"), "k": 1000, "": 1}
    assert parse_quantity(f"{number}{suffix}") == number * Decimal(scale[suffix])


# --- the command line ----------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["manifests", "model", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_command_prints_yaml_documents(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(
        capsys,
        "--supplier",
        "OasisLMF",
        "--model",
        "PiWind",
        "--version",
        "1",
        "--max",
        "20",
        "--tls",
        "--cpu-request",
        "500m",
    )
    assert status == 0
    docs = [doc for doc in yaml.safe_load_all(out) if doc]
    assert [d["kind"] for d in docs] == ["Deployment", "TriggerAuthentication", "ScaledObject"]
    expected = replace(PIWIND, tls=True, resources=Resources(cpu_request="500m"))
    assert docs == worker_manifests(expected)
    validate_builtin(docs[0])


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--min", "3", "--max", "2"], "--min"),
        (["--min", "-1"], "--min"),
        (["--max", "0"], "--max"),
        (["--max", "two"], "--max"),
        (["--supplier", "Oasis_LMF"], "--supplier"),
        (["--memory-request", "8Gi", "--memory-limit", "4Gi"], "--memory-request"),
        (["--scaler-address", "scaler"], "--scaler-address"),
    ],
    ids=["min above max", "negative", "max zero", "not a number", "bad name", "request", "addr"],
)
def test_bad_flags_exit_2_and_print_nothing(
    capsys: pytest.CaptureFixture[str], argv: list[str], flag: str
) -> None:
    base = {"--supplier": "OasisLMF", "--model": "PiWind", "--version": "1"}
    given_flags = dict(zip(argv[::2], argv[1::2], strict=True))
    words = [w for k, v in {**base, **given_flags}.items() for w in (k, v)]
    with pytest.raises(SystemExit) as stopped:
        main(["manifests", "model", *words])
    out, err = capsys.readouterr()
    assert stopped.value.code == 2
    assert out == ""
    assert f"{flag}" in err and "error" in err


def test_missing_model_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["manifests", "model", "--supplier", "OasisLMF", "--version", "1"])
    assert stopped.value.code == 2
    assert "--model" in capsys.readouterr().err


SPECS = st.builds(
    WorkerSpec,
    ID,
    ID,
    ID,
    min_replicas=st.integers(0, 3),
    max_replicas=st.integers(3, 50),
    tls=st.booleans(),
    grace_period_seconds=st.integers(0, 86400),
    concurrency=st.integers(1, 8),
    fallback_replicas=st.none() | st.integers(0, 5),
    model_data_dir=st.none() | st.just("/data/models/x"),
    resources=st.sampled_from([Resources(), Resources("250m", "1", "512Mi", "1Gi")]),
    deployment=st.none() | st.just("worker-existing-1"),
    queue_name=st.none() | st.just("Existing-Model-1-v2"),
)


@settings(max_examples=25, deadline=None)
@given(SPECS)
def test_the_header_command_prints_the_same_again(spec: WorkerSpec) -> None:
    text = manifests_command.render(spec)
    header = text.splitlines()[0].removeprefix("# Generated by: ")
    argv = shlex.split(header)
    assert argv[:3] == ["oasis-autoscaler", "manifests", "model"]
    args = main_parser().parse_args(argv[1:])
    assert manifests_command.spec_from(args) == spec


def main_parser() -> Any:
    from cli.main import build_parser

    return build_parser()


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.parent.name for p in EXAMPLES])
def test_shipped_examples_are_what_the_command_prints(
    capsys: pytest.CaptureFixture[str], path: Path
) -> None:
    text = path.read_text()
    argv = shlex.split(text.splitlines()[0].removeprefix("# Generated by: "))
    assert main(argv[1:]) == 0
    assert capsys.readouterr().out == text, f"regenerate {path.relative_to(ROOT)}"


def test_examples_exist() -> None:
    assert {p.parent.name for p in EXAMPLES} == {"piwind", "piwind-tls", "oasisplatform-piwind"}
