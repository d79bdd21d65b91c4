"""A worker marks its own pod busy or idle with `controller.kubernetes.io/pod-deletion-cost`.

When the HPA scales a model's workers down, the ReplicaSet removes the pods with the lowest
deletion cost first: a pod running a task says so with a high cost, an idle one with a low cost,
so idle pods go first and running chunks are not cut short (they would be delivered again, at
the price of their run time).

The pod is busy while any of its pool processes runs a task. The prefork pool's processes share
a table of the busy ones (made before the fork) and patch the pod only when the pod as a whole
changes between busy and idle, under a lock, so that two patches cannot arrive out of order.
Marking is best effort: a failed patch is logged and never fails the task; the next change tries
again.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery.signals import task_postrun, task_prerun
from kubernetes.client import ApiClient, Configuration, CoreV1Api
from kubernetes.client.exceptions import ApiException
from kubernetes.config.incluster_config import InClusterConfigLoader

from worker.settings import WorkerSettings

log = logging.getLogger(__name__)

ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
# Pods without the annotation count 0 (a fresh pod is idle too); the value is an int32.
BUSY_COST = 1000
IDLE_COST = 0
# The client's default for a patch is a JSON patch (a list of operations); ours is a map.
MERGE_PATCH = "application/merge-patch+json"
# Before a task starts, so a slow or unreachable API server delays it this long at most.
PATCH_TIMEOUT_SECONDS = 2.0
# A pool process killed while holding the lock never releases it: the others go on without it.
LOCK_TIMEOUT_SECONDS = 5.0
# Nothing marked yet (neither cost): the first change is always patched.
UNMARKED = -1


def in_cluster_api(service_account_dir: Path) -> CoreV1Api:
    """The API server as the pod's service account sees it (Kubernetes's in-cluster config:
    KUBERNETES_SERVICE_HOST/_PORT, and the token and CA in the service account's folder)."""
    configuration = Configuration()
    # The config loaders are not annotated (the generated client is).
    loader = InClusterConfigLoader(  # type: ignore[no-untyped-call]
        token_filename=str(service_account_dir / "token"),
        cert_filename=str(service_account_dir / "ca.crt"),
    )
    loader.load_and_set(configuration)  # type: ignore[no-untyped-call]
    # One attempt: a retry would hold the task back longer than the mark is worth.
    configuration.retries = 0
    return CoreV1Api(ApiClient(configuration))


class PodMarker:
    """Patches one pod's deletion cost; returns whether it worked, never raises."""

    def __init__(self, api: Callable[[], CoreV1Api], namespace: str, name: str) -> None:
        self._make_api = api
        self._api: CoreV1Api | None = None
        self._pid = 0
        self.namespace = namespace
        self.name = name

    def mark(self, cost: int) -> bool:
        body = {"metadata": {"annotations": {ANNOTATION: str(cost)}}}
        try:
            self._client().patch_namespaced_pod(
                self.name,
                self.namespace,
                body,
                _content_type=MERGE_PATCH,
                _request_timeout=PATCH_TIMEOUT_SECONDS,
            )
        except ApiException as error:
            log.warning(
                "cannot mark pod %s/%s with deletion cost %s: %s %s",
                self.namespace,
                self.name,
                cost,
                error.status,
                error.reason,
            )
            return False
        except Exception as error:  # no API server, TLS, timeouts: none may fail the task
            log.warning(
                "cannot mark pod %s/%s with deletion cost %s: %s",
                self.namespace,
                self.name,
                cost,
                error,
            )
            return False
        return True

    def _client(self) -> CoreV1Api:
        # Made in the process that patches: a client's connections are not shared over a fork.
        if self._api is None or self._pid != os.getpid():
            self._api = self._make_api()
            self._pid = os.getpid()
        return self._api


class BusyPod:
    """Which pool processes of this pod run a task; marks the pod when that turns busy or idle.

    Made in the main process before the pool forks, so that every pool process shares it.
    """

    def __init__(self, marker: PodMarker, processes: int) -> None:
        self._marker = marker
        self._lock = multiprocessing.Lock()
        # PIDs of the processes running a task; a killed process's entry is ignored.
        self._busy = multiprocessing.Array("i", processes, lock=False)
        self._marked = multiprocessing.Value("i", UNMARKED, lock=False)

    def task_started(self) -> None:
        self._update(busy=True)

    def task_ended(self) -> None:
        self._update(busy=False)

    def _update(self, *, busy: bool) -> None:
        locked = self._lock.acquire(timeout=LOCK_TIMEOUT_SECONDS)
        if not locked:
            log.warning("pod deletion cost: the lock is held too long; marking without it")
        try:
            self._set(os.getpid(), busy)
            cost = BUSY_COST if any(_alive(pid) for pid in self._busy) else IDLE_COST
            if cost != self._marked.value and self._marker.mark(cost):
                self._marked.value = cost
        finally:
            if locked:
                self._lock.release()

    def _set(self, pid: int, busy: bool) -> None:
        for slot, entry in enumerate(self._busy):
            if entry == pid or not _alive(entry):
                self._busy[slot] = 0
        if busy:
            free = [slot for slot, entry in enumerate(self._busy) if entry == 0]
            # No free slot only if the pool outgrew --concurrency: busy all the same.
            self._busy[free[0] if free else 0] = pid


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def activate(busy_pod: BusyPod) -> None:
    """Mark the pod from Celery's task signals, which fire in the pool process running the
    task (task_postrun fires after a failure or a retry too)."""

    def started(**_: Any) -> None:
        busy_pod.task_started()

    def ended(**_: Any) -> None:
        busy_pod.task_ended()

    task_prerun.connect(started, weak=False, dispatch_uid=f"{__name__}.started")
    task_postrun.connect(ended, weak=False, dispatch_uid=f"{__name__}.ended")


def activate_for(settings: WorkerSettings) -> BusyPod | None:
    """Mark the worker's pod when the settings name it (the Deployment's downward API)."""
    if not (settings.pod_name and settings.pod_namespace):
        return None
    account = settings.kubernetes_service_account_dir
    marker = PodMarker(lambda: in_cluster_api(account), settings.pod_namespace, settings.pod_name)
    busy_pod = BusyPod(marker, settings.concurrency)
    activate(busy_pod)
    log.info("pod %s/%s: marking its deletion cost", settings.pod_namespace, settings.pod_name)
    return busy_pod
