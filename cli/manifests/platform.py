"""An existing OasisPlatform's worker Deployments -> one `WorkerSpec` each, for their ScaledObjects.

Input: what `kubectl get deployments -l oasislmf/type=worker -o json` prints (a `List` of
Deployments). The platform labels each model's worker Deployment with `oasislmf/type: worker`
and the model's ids; its queue, the `model` the scaler knows it by, is
`<supplier_id>-<model_id>-<version_id>` with `-v2` for a v2 worker (every worker but one
labelled `oasislmf/api-version: v1`). Items that are not such a worker are skipped, each with
the reason.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from cli.manifests.worker_spec import WorkerSpec

TYPE_LABEL = "oasislmf/type"
SUPPLIER_LABEL = "oasislmf/supplier-id"
MODEL_LABEL = "oasislmf/model-id"
VERSION_LABEL = "oasislmf/model-version-id"
API_VERSION_LABEL = "oasislmf/api-version"


@dataclass(frozen=True)
class Skipped:
    item: str
    reason: str


def platform_specs(listing: Any, template: WorkerSpec) -> tuple[list[WorkerSpec], list[Skipped]]:
    """A spec per worker Deployment in `listing` (fields other than the ids, the Deployment and
    the queue come from `template`; its namespace too, unless the Deployment names one)."""
    items = listing.get("items") if isinstance(listing, Mapping) else None
    if not isinstance(items, list):
        raise ValueError("not a list of Deployments: give `kubectl get deployments -o json`")
    specs, skipped = [], []
    for number, item in enumerate(items):
        metadata = item.get("metadata") if isinstance(item, Mapping) else None
        metadata = metadata if isinstance(metadata, Mapping) else {}
        name = metadata.get("name")
        where = str(name) if name else f"item {number}"
        labels = metadata.get("labels")
        labels = labels if isinstance(labels, Mapping) else {}
        if item.get("kind", "Deployment") != "Deployment" or not isinstance(name, str):
            skipped.append(Skipped(where, "not a named Deployment"))
            continue
        if labels.get(TYPE_LABEL) != "worker":
            skipped.append(Skipped(where, f"not labelled {TYPE_LABEL}=worker"))
            continue
        ids = [labels.get(label) for label in (SUPPLIER_LABEL, MODEL_LABEL, VERSION_LABEL)]
        if not all(isinstance(value, str) and value for value in ids):
            skipped.append(
                Skipped(where, f"without {SUPPLIER_LABEL}, {MODEL_LABEL} and {VERSION_LABEL}")
            )
            continue
        supplier, model, version = (str(value) for value in ids)
        queue = f"{supplier}-{model}-{version}"
        if str(labels.get(API_VERSION_LABEL, "v2")).lower() != "v1":
            queue += "-v2"
        namespace = metadata.get("namespace")
        specs.append(
            replace(
                template,
                supplier=supplier,
                model=model,
                version=version,
                deployment=name,
                queue_name=queue,
                namespace=namespace if isinstance(namespace, str) else template.namespace,
            )
        )
    return specs, skipped
