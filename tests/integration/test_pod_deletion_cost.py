"""A worker marks its own pod's deletion cost through the Kubernetes API, over real TLS.

The API server is the loopback emulation of its one endpoint the workers use
(tests/support/kube_api.py); the client is the real `kubernetes` client with in-cluster config:
KUBERNETES_SERVICE_HOST/_PORT, and a service account folder with the token and the CA.
"""

from __future__ import annotations

import logging
import multiprocessing
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import requests
from celery import Celery

from tests.support.kube_api import KubeApi, kube_api
from tests.support.servers import api_server, free_port, wait_until, worker_server
from tests.support.tls import CertificateAuthority, Issued, certificate_authority
from worker.pod_deletion_cost import (
    ANNOTATION,
    BUSY_COST,
    IDLE_COST,
    MERGE_PATCH,
    BusyPod,
    PodMarker,
    in_cluster_api,
)
from worker.tasks import SUB_TASK

pytestmark = pytest.mark.integration

NAMESPACE = "oasis"
POD = "worker-7d4f9-abcde"
TOKEN = "service-account-token"
BUSY, IDLE = str(BUSY_COST), str(IDLE_COST)


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return certificate_authority(tmp_path_factory.mktemp("kube-tls"), "kube-ca")


@pytest.fixture(scope="module")
def server_certificate(authority: CertificateAuthority) -> Issued:
    return authority.server("kube-apiserver")


@pytest.fixture
def service_account(tmp_path: Path, authority: CertificateAuthority) -> Path:
    """What Kubernetes mounts in a pod at /var/run/secrets/kubernetes.io/serviceaccount."""
    folder = tmp_path / "serviceaccount"
    folder.mkdir()
    (folder / "token").write_text(TOKEN)
    shutil.copy(authority.certificate, folder / "ca.crt")
    (folder / "namespace").write_text(NAMESPACE)
    return folder


@pytest.fixture
def kube(server_certificate: Issued, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeApi]:
    with kube_api(
        str(server_certificate.certificate), str(server_certificate.key), token=TOKEN
    ) as api:
        api.add_pod(NAMESPACE, POD)
        # As Kubernetes sets them in every pod.
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(api.port))
        yield api


def marker(service_account: Path, pod: str = POD) -> PodMarker:
    return PodMarker(lambda: in_cluster_api(service_account), NAMESPACE, pod)


def test_busy_then_idle(kube: KubeApi, service_account: Path) -> None:
    pod = BusyPod(marker(service_account), processes=1)
    pod.task_started()
    assert kube.annotation(NAMESPACE, POD, ANNOTATION) == BUSY
    pod.task_ended()
    assert kube.annotation(NAMESPACE, POD, ANNOTATION) == IDLE
    pod.task_started()
    pod.task_ended()
    assert kube.values(NAMESPACE, POD, ANNOTATION) == [BUSY, IDLE, BUSY, IDLE]
    assert {patch.content_type for patch in kube.patches} == {MERGE_PATCH}
    labels = kube.pods[NAMESPACE, POD]["metadata"]["labels"]
    assert labels == {"app": "oasis-worker"}, "a merge patch leaves the rest of the pod alone"


def _run_one_task(pod: BusyPod, may_start: multiprocessing.synchronize.Event) -> None:
    may_start.wait(10)
    pod.task_started()
    pod.task_ended()


def test_busy_while_any_pool_process_is(kube: KubeApi, service_account: Path) -> None:
    """Two pool processes forked from the worker: the pod is idle only when both are."""
    pod = BusyPod(marker(service_account), processes=2)
    fork = multiprocessing.get_context("fork")
    may_start = fork.Event()
    other = fork.Process(target=_run_one_task, args=(pod, may_start))
    other.start()
    try:
        pod.task_started()
        may_start.set()
        other.join(20)
        assert other.exitcode == 0
        # The other process's task came and went while this one's ran: still busy.
        assert kube.values(NAMESPACE, POD, ANNOTATION) == [BUSY]
        pod.task_ended()
        assert kube.values(NAMESPACE, POD, ANNOTATION) == [BUSY, IDLE]
    finally:
        other.kill()
        other.join()


def test_a_killed_pool_process_does_not_keep_the_pod_busy(
    kube: KubeApi, service_account: Path
) -> None:
    pod = BusyPod(marker(service_account), processes=2)
    fork = multiprocessing.get_context("fork")
    lost = fork.Process(target=pod.task_started)  # starts a task, then is gone without ending
    lost.start()
    lost.join(20)
    assert kube.values(NAMESPACE, POD, ANNOTATION) == [BUSY]
    pod.task_started()
    pod.task_ended()
    assert kube.values(NAMESPACE, POD, ANNOTATION) == [BUSY, IDLE]


@pytest.mark.parametrize(
    ("case", "status"),
    [("unknown pod", 404), ("wrong token", 401), ("no right to patch", 403)],
)
def test_a_refused_patch_is_logged_and_retried_at_the_next_change(
    kube: KubeApi,
    service_account: Path,
    caplog: pytest.LogCaptureFixture,
    case: str,
    status: int,
) -> None:
    name = "no-such-pod" if case == "unknown pod" else POD
    if case == "wrong token":
        (service_account / "token").write_text("expired")
    if case == "no right to patch":
        kube.tokens.clear()
        kube.forbidden_tokens.add(TOKEN)
    pod = BusyPod(marker(service_account, name), processes=1)
    with caplog.at_level(logging.WARNING, logger="worker.pod_deletion_cost"):
        pod.task_started()
    assert f"cannot mark pod {NAMESPACE}/{name} with deletion cost {BUSY_COST}: {status}" in (
        caplog.text
    )
    assert kube.annotation(NAMESPACE, POD, ANNOTATION) is None
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="worker.pod_deletion_cost"):
        pod.task_ended()
    assert f"deletion cost {IDLE_COST}: {status}" in caplog.text, "tried again"


def test_no_api_server(service_account: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(free_port()))
    assert not marker(service_account).mark(BUSY_COST)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    assert not marker(service_account).mark(BUSY_COST), "not in a cluster at all"


def test_the_emulator_refuses_what_the_api_server_refuses(
    kube: KubeApi, authority: CertificateAuthority
) -> None:
    url = f"{kube.url}/api/v1/namespaces/{NAMESPACE}/pods/{POD}"
    body = '{"metadata": {"annotations": {"a": "b"}}}'
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    verify = str(authority.certificate)
    reply = requests.patch(url, data=body, headers=headers, verify=verify, timeout=5)
    assert (reply.status_code, reply.json()["reason"]) == (415, "UnsupportedMediaType")
    del headers["Authorization"]
    headers["Content-Type"] = MERGE_PATCH
    reply = requests.patch(url, data=body, headers=headers, verify=verify, timeout=5)
    assert (reply.status_code, reply.json()["reason"]) == (401, "Unauthorized")
    with pytest.raises(requests.exceptions.SSLError):
        requests.patch(url, data=body, headers=headers, timeout=5)  # not the system's CAs
    assert kube.patches == []


def test_a_real_worker_marks_its_pod_around_a_sub_task(
    server_certificate: Issued, service_account: Path, tmp_path: Path, redis_url: str
) -> None:
    queue = "OasisLMF-PodCost-1"
    data_dir = tmp_path / "data"
    client = Celery("test-client", broker=redis_url, backend=redis_url)
    # Analysis 999999 does not exist: the sub-task runs and ends at once ("skipped").
    args = (999999, "inputs", "prepare", None, 1)
    with ExitStack() as stack:
        kube = stack.enter_context(
            kube_api(str(server_certificate.certificate), str(server_certificate.key), token=TOKEN)
        )
        kube.add_pod(NAMESPACE, POD)
        env = {
            "OASIS_AUTOSCALER_POD_NAME": POD,
            "OASIS_AUTOSCALER_POD_NAMESPACE": NAMESPACE,
            "OASIS_AUTOSCALER_KUBERNETES_SERVICE_ACCOUNT_DIR": str(service_account),
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(kube.port),
        }
        # The API makes the database the worker reads.
        stack.enter_context(api_server(data_dir, database_url=None, redis_url=redis_url))
        stack.enter_context(
            worker_server(
                data_dir,
                redis_url=redis_url,
                queue=queue,
                numba_cache_dir=tmp_path / "numba",
                env=env,
                log_path=tmp_path / "worker.log",
            )
        )
        assert kube.values(NAMESPACE, POD, ANNOTATION) == [], "not marked before a task"
        result = client.send_task(SUB_TASK, args=args, queue=queue)
        assert "skipped" in result.get(timeout=60)
        wait_until(
            lambda: kube.values(NAMESPACE, POD, ANNOTATION) == [BUSY, IDLE],
            "the pod marked busy, then idle",
            deadline=10,
        )
        kube.down()
        result = client.send_task(SUB_TASK, args=args, queue=queue)
        assert "skipped" in result.get(timeout=60), (
            "without an API server the task runs all the same"
        )
    assert kube.values(NAMESPACE, POD, ANNOTATION) == [BUSY, IDLE]
    assert f"cannot mark pod {NAMESPACE}/{POD}" in (tmp_path / "worker.log").read_text()
    client.close()
