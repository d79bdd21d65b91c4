"""What a model's workers on Kubernetes are made of, and everything that can be wrong with it.

Pure: `check` lists the problems of a `WorkerSpec`, each naming its field, so that a command line
can name the flag. `cli.manifests.generator` builds the objects of a spec that passed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from cli.keda.timing import (
    COOLDOWN_PERIOD_SECONDS,
    POLLING_INTERVAL_SECONDS,
    SCALE_DOWN_STABILIZATION_SECONDS,
)
from cli.manifests.quantities import parse_quantity
from scaler.configuration import INT32_MAX
from worker.messages import model_queue
from worker.settings import WorkerSettings

# The HPA's stabilization window is at most an hour.
MAX_WINDOW_SECONDS = 3600

# Objects of the kustomize base (manifests/base) that every model's workers use.
DEFAULT_NAMESPACE = "oasis"
SCALER_SERVICE = "oasis-scaler"
SCALER_GRPC_PORT = 9090
DATA_DIR = "/data"
DEFAULT_IMAGE = "oasis-autoscaler:latest"
# Secret with the client side of KEDA's TLS to the scaler (keys: ca.crt, tls.crt, tls.key).
DEFAULT_TLS_SECRET = "oasis-scaler-client-tls"

# A worker finishes its running chunk on SIGTERM; by default it has as long as a message stays
# reserved before the broker delivers it again (the worker's visibility timeout).
DEFAULT_GRACE_SECONDS: int = WorkerSettings.model_fields["visibility_timeout_seconds"].default

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
MAX_NAME = 63
ADDRESS = re.compile(
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?):(?P<port>[0-9]{1,5})"
)


@dataclass(frozen=True)
class Resources:
    cpu_request: str = "1"
    cpu_limit: str = "2"
    memory_request: str = "2Gi"
    memory_limit: str = "4Gi"


@dataclass(frozen=True)
class WorkerSpec:
    """One model's workers. Ids as registered: the queue keeps their case, names lower it."""

    supplier: str
    model: str
    version: str
    min_replicas: int = 0
    max_replicas: int = 10
    namespace: str = DEFAULT_NAMESPACE
    # Unset: the base's scaler Service in `namespace`.
    scaler_address: str | None = None
    image: str = DEFAULT_IMAGE
    tls: bool = False
    tls_secret: str = DEFAULT_TLS_SECRET
    grace_period_seconds: int = DEFAULT_GRACE_SECONDS
    polling_interval_seconds: int = POLLING_INTERVAL_SECONDS
    cooldown_period_seconds: int = COOLDOWN_PERIOD_SECONDS
    scale_down_window_seconds: int = SCALE_DOWN_STABILIZATION_SECONDS
    concurrency: int = 1
    # Unset: the built-in demo model.
    model_data_dir: str | None = None
    # Unset: while the scaler cannot answer, KEDA keeps the replicas that run; else this many.
    fallback_replicas: int | None = None
    # An existing worker Deployment (an OasisPlatform's): only its ScaledObject is made.
    deployment: str | None = None
    # The queue as the publisher names it, when not `<supplier>-<model>-<version>` (an
    # OasisPlatform v2 model's queue ends in `-v2`).
    queue_name: str | None = None
    resources: Resources = field(default_factory=Resources)

    @property
    def queue(self) -> str:
        """The model's queue name: the scaler's name for the model."""
        return self.queue_name or model_queue(self.supplier, self.model, self.version)

    @property
    def name(self) -> str:
        """The Deployment's, the ScaledObject's (and the TriggerAuthentication's) name."""
        return self.deployment or f"worker-{self.queue}".lower()

    @property
    def effective_scaler_address(self) -> str:
        default = f"{SCALER_SERVICE}.{self.namespace}.svc:{SCALER_GRPC_PORT}"
        return self.scaler_address or default


@dataclass(frozen=True)
class Problem:
    field: str  # a WorkerSpec field, or `resources.<field>`
    message: str


def check(spec: WorkerSpec) -> list[Problem]:
    """Everything wrong with `spec`; empty when its objects can be built."""
    return [
        *_names(spec),
        *_counts(spec),
        *_references(spec),
        *_resources(spec.resources),
    ]


def _names(spec: WorkerSpec) -> list[Problem]:
    ids = (("supplier", spec.supplier), ("model", spec.model), ("version", spec.version))
    # The ids name the objects only when no existing Deployment does.
    problems = [
        Problem(
            name,
            f"{value!r} is not a DNS-1123 label when lowercased: use letters, digits "
            "and '-', starting and ending with a letter or a digit",
        )
        for name, value in ids
        if not DNS_LABEL.fullmatch(value.lower())
        and (spec.deployment is None or not value or any(c.isspace() for c in value))
    ]
    if not DNS_LABEL.fullmatch(spec.namespace):
        problems.append(
            Problem(
                "namespace",
                f"{spec.namespace!r} is not a namespace name (a DNS-1123 "
                "label: lower-case letters, digits and '-')",
            )
        )
    if spec.deployment is not None and not DNS_LABEL.fullmatch(spec.deployment):
        problems.append(
            Problem(
                "deployment",
                f"{spec.deployment!r} is not a Deployment name of up to {MAX_NAME} characters "
                "(lower-case letters, digits and '-')",
            )
        )
    if spec.queue_name is not None and (
        not spec.queue_name or any(c.isspace() for c in spec.queue_name)
    ):
        problems.append(Problem("queue_name", f"{spec.queue_name!r} is not a queue name"))
    if len(spec.name) > MAX_NAME:
        problems.append(
            Problem(
                "model",
                f"the workers' name {spec.name!r} has {len(spec.name)} characters, "
                f"over Kubernetes' {MAX_NAME} (shorten the supplier, model or version id)",
            )
        )
    return problems


def _counts(spec: WorkerSpec) -> list[Problem]:
    bounds: list[tuple[str, int | None, int, int]] = [
        ("min_replicas", spec.min_replicas, 0, INT32_MAX),
        # KEDA's CRD: maxReplicaCount >= 1.
        ("max_replicas", spec.max_replicas, 1, INT32_MAX),
        ("grace_period_seconds", spec.grace_period_seconds, 0, INT32_MAX),
        ("polling_interval_seconds", spec.polling_interval_seconds, 1, INT32_MAX),
        ("cooldown_period_seconds", spec.cooldown_period_seconds, 0, INT32_MAX),
        ("scale_down_window_seconds", spec.scale_down_window_seconds, 0, MAX_WINDOW_SECONDS),
        ("concurrency", spec.concurrency, 1, INT32_MAX),
        ("fallback_replicas", spec.fallback_replicas, 0, INT32_MAX),
    ]
    problems = [
        Problem(name, f"must be from {low} to {high}, got {value}")
        for name, value, low, high in bounds
        if value is not None and not low <= value <= high
    ]
    if spec.min_replicas > spec.max_replicas:
        problems.append(
            Problem(
                "min_replicas", f"{spec.min_replicas} is above the maximum, {spec.max_replicas}"
            )
        )
    return problems


def _references(spec: WorkerSpec) -> list[Problem]:
    problems = []
    address = ADDRESS.fullmatch(spec.effective_scaler_address)
    if address is None or not 1 <= int(address["port"]) <= 65535:
        problems.append(
            Problem(
                "scaler_address",
                f"{spec.effective_scaler_address!r} is not HOST:PORT with a port from 1 to 65535",
            )
        )
    if not spec.image or any(c.isspace() for c in spec.image):
        problems.append(Problem("image", f"{spec.image!r} is not an image reference"))
    if not DNS_LABEL.fullmatch(spec.tls_secret):
        problems.append(Problem("tls_secret", f"{spec.tls_secret!r} is not a Secret name"))
    if spec.model_data_dir is not None and not spec.model_data_dir.startswith("/"):
        problems.append(
            Problem(
                "model_data_dir",
                f"{spec.model_data_dir!r} must be an absolute path "
                f"(the shared volume is mounted at {DATA_DIR})",
            )
        )
    return problems


def _resources(resources: Resources) -> list[Problem]:
    problems = []
    for kind in ("cpu", "memory"):
        amounts = {}
        for which in ("request", "limit"):
            name = f"{kind}_{which}"
            text: str = getattr(resources, name)
            amount = parse_quantity(text)
            if amount is None or amount <= 0:
                problems.append(
                    Problem(
                        f"resources.{name}",
                        f"{text!r} is not a positive Kubernetes quantity (e.g. 500m, 2, 4Gi)",
                    )
                )
            else:
                amounts[which] = amount
        if len(amounts) == 2 and amounts["request"] > amounts["limit"]:
            problems.append(
                Problem(
                    f"resources.{kind}_request",
                    f"{getattr(resources, f'{kind}_request')} "
                    f"is above the limit {getattr(resources, f'{kind}_limit')}",
                )
            )
    return problems
