"""A model's workers on Kubernetes: its worker Deployment and KEDA ScaledObject, as plain dicts.

The scaler owns what these objects say about scaling, so they are built here, next to it:

- one `external-push` trigger naming the model by its queue name (the scaler's `model`
  metadata), metricType AverageValue against the scaler's fixed target of 1 per worker;
- HPA tolerance 0 both ways, so that a change of one worker is never ignored (the default 10 %
  ignores it from 10 replicas up);
- a short scale-down window, and a grace period that lets a worker finish its chunk.

Pure: no I/O. The names of the shared objects (service account, volume claim, secrets, scaler
service) are those of the kustomize base in `manifests/`.
"""

from __future__ import annotations

from typing import Any

from cli.manifests.worker_spec import DATA_DIR, WorkerSpec, check

Manifest = dict[str, Any]

# The trigger metadata key that names the model (scaler.servicer.MODEL_KEY; that module needs
# grpc, which this one does without).
MODEL_KEY = "model"
# Objects of the kustomize base (manifests/base).
WORKER_SERVICE_ACCOUNT = "oasis-worker"
DATA_CLAIM = "oasis-data"
REDIS_SECRET = "oasis-redis"
DATABASE_SECRET = "oasis-database"
SECRET_URL_KEY = "url"
TLS_PARAMETERS = {"caCert": "ca.crt", "tlsClientCert": "tls.crt", "tlsClientKey": "tls.key"}
# The image's non-root user (Dockerfile).
RUN_AS = 10001


def worker_manifests(spec: WorkerSpec) -> list[Manifest]:
    """The Deployment (unless the spec names an existing one), the ScaledObject, and with TLS
    the TriggerAuthentication, in apply order."""
    problems = check(spec)
    if problems:
        raise ValueError("; ".join(f"{p.field}: {p.message}" for p in problems))
    # An existing Deployment (an OasisPlatform's workers) is scaled, not made again.
    manifests = (
        [scaled_object(spec)] if spec.deployment else [deployment(spec), scaled_object(spec)]
    )
    if spec.tls:
        manifests.insert(len(manifests) - 1, trigger_authentication(spec))
    return manifests


def labels(spec: WorkerSpec) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "oasis-worker",
        "app.kubernetes.io/instance": spec.name,
        "app.kubernetes.io/component": "worker",
        "app.kubernetes.io/part-of": "oasis-autoscaler",
    }


def _metadata(spec: WorkerSpec, name: str) -> Manifest:
    return {
        "name": name,
        "namespace": spec.namespace,
        "labels": labels(spec),
        # The queue keeps the model ids' case; labels cannot always hold it.
        "annotations": {"oasis-autoscaler/queue": spec.queue},
    }


def deployment(spec: WorkerSpec) -> Manifest:
    selector = {
        k: labels(spec)[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(spec, spec.name),
        # No `replicas`: the HPA that KEDA makes owns it, and applying this again keeps its count.
        "spec": {
            "selector": {"matchLabels": selector},
            # A rollout starts new workers before the old ones finish their chunks.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
            },
            "template": {
                "metadata": {"labels": labels(spec)},
                "spec": _pod_spec(spec),
            },
        },
    }


def _pod_spec(spec: WorkerSpec) -> Manifest:
    return {
        "serviceAccountName": WORKER_SERVICE_ACCOUNT,
        # The worker patches its own pod's deletion cost through the API server.
        "automountServiceAccountToken": True,
        "terminationGracePeriodSeconds": spec.grace_period_seconds,
        "securityContext": pod_security_context(),
        "containers": [_container(spec)],
        "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": DATA_CLAIM}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}},
        ],
    }


def pod_security_context() -> Manifest:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> Manifest:
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container(spec: WorkerSpec) -> Manifest:
    resources = spec.resources
    return {
        "name": "worker",
        "image": spec.image,
        "command": ["oasis-autoscaler"],
        "args": ["worker", "--loglevel", "INFO"],
        "env": _env(spec),
        "resources": {
            "requests": {"cpu": resources.cpu_request, "memory": resources.memory_request},
            "limits": {"cpu": resources.cpu_limit, "memory": resources.memory_limit},
        },
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "data", "mountPath": DATA_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        # A busy worker still answers: its main process handles control messages while a pool
        # process runs the chunk. Not ready = not answering; a long silence restarts it (its
        # chunk is delivered again).
        "startupProbe": _ping_probe(period=10, failures=30),
        "readinessProbe": _ping_probe(period=30, failures=3),
        "livenessProbe": _ping_probe(period=60, failures=10),
    }


def _env(spec: WorkerSpec) -> list[Manifest]:
    plain = {
        "OASIS_AUTOSCALER_QUEUE": spec.queue,
        "OASIS_AUTOSCALER_DATA_DIR": DATA_DIR,
        "OASIS_AUTOSCALER_CONCURRENCY": str(spec.concurrency),
        # Never redeliver a chunk that its worker may still finish within its grace period.
        "OASIS_AUTOSCALER_VISIBILITY_TIMEOUT_SECONDS": str(max(spec.grace_period_seconds, 1)),
        # The root filesystem is read-only: anything written to a home directory goes to /tmp.
        "HOME": "/tmp",
    }
    if spec.model_data_dir is not None:
        plain["OASIS_AUTOSCALER_MODEL_DATA_DIR"] = spec.model_data_dir
    env: list[Manifest] = [{"name": k, "value": v} for k, v in plain.items()]
    env += [
        {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": SECRET_URL_KEY}}}
        for name, secret in (
            ("OASIS_AUTOSCALER_REDIS_URL", REDIS_SECRET),
            ("OASIS_AUTOSCALER_DATABASE_URL", DATABASE_SECRET),
        )
    ]
    # The pod marks its own deletion cost (busy: high, idle: low) through these.
    env += [
        {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}
        for name, path in (
            ("OASIS_AUTOSCALER_POD_NAME", "metadata.name"),
            ("OASIS_AUTOSCALER_POD_NAMESPACE", "metadata.namespace"),
        )
    ]
    return env


# The worker's Celery node name in a pod: `<queue>@<pod name>` (worker/cli.py node_name).
PING = (
    'exec celery --broker "$OASIS_AUTOSCALER_REDIS_URL" inspect ping --timeout 10 '
    '--destination "$OASIS_AUTOSCALER_QUEUE@$OASIS_AUTOSCALER_POD_NAME"'
)


def _ping_probe(*, period: int, failures: int) -> Manifest:
    return {
        "exec": {"command": ["sh", "-c", PING]},
        "periodSeconds": period,
        "timeoutSeconds": 20,
        "failureThreshold": failures,
    }


def trigger_authentication(spec: WorkerSpec) -> Manifest:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": _metadata(spec, spec.name),
        "spec": {
            "secretTargetRef": [
                {"parameter": parameter, "name": spec.tls_secret, "key": key}
                for parameter, key in TLS_PARAMETERS.items()
            ]
        },
    }


def scaled_object(spec: WorkerSpec) -> Manifest:
    body: Manifest = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name},
        "minReplicaCount": spec.min_replicas,
        "maxReplicaCount": spec.max_replicas,
        "pollingInterval": spec.polling_interval_seconds,
        "cooldownPeriod": spec.cooldown_period_seconds,
        "advanced": {"horizontalPodAutoscalerConfig": {"behavior": _behavior(spec)}},
        "triggers": [_trigger(spec)],
    }
    if spec.fallback_replicas is None:
        # KEDA needs `replicas`; currentReplicas ignores it and keeps what runs.
        body["fallback"] = {
            "failureThreshold": 3,
            "replicas": spec.min_replicas,
            "behavior": "currentReplicas",
        }
    else:
        body["fallback"] = {
            "failureThreshold": 3,
            "replicas": spec.fallback_replicas,
            "behavior": "static",
        }
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _metadata(spec, spec.name),
        "spec": body,
    }


def _trigger(spec: WorkerSpec) -> Manifest:
    metadata = {"scalerAddress": spec.effective_scaler_address, MODEL_KEY: spec.queue}
    trigger: Manifest = {"type": "external-push", "metricType": "AverageValue"}
    if spec.tls:
        metadata["enableTLS"] = "true"
        trigger["authenticationRef"] = {"kind": "TriggerAuthentication", "name": spec.name}
    trigger["metadata"] = metadata
    return trigger


def _behavior(spec: WorkerSpec) -> Manifest:
    """Follow the scaler's count exactly: tolerance 0 (a quantity), up at once, down soon."""
    return {
        "scaleUp": {
            "stabilizationWindowSeconds": 0,
            "tolerance": "0",
            # Reach the asked count in one step, however far.
            "policies": [{"type": "Pods", "value": spec.max_replicas, "periodSeconds": 15}],
            "selectPolicy": "Max",
        },
        "scaleDown": {
            "stabilizationWindowSeconds": spec.scale_down_window_seconds,
            "tolerance": "0",
            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
            "selectPolicy": "Max",
        },
    }
