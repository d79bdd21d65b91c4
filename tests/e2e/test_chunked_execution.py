"""Chunked execution end to end, through the real `oasislmf` client and real worker processes.

The same analysis gives the same outputs in one chunk and in many (fixed and dynamic chunking,
both stages); a worker killed with SIGKILL mid-run loses nothing; a cancelled run ends cancelled
with no sub-task left in the queue; neither leaves a kernel process of the stopped chunk running;
a failing sub-task is retried, then reported. Each time the workers' sub-task metrics
(GET /metrics) agree with the sub-tasks the API lists.
"""

from __future__ import annotations

import csv
import io
import math
import os
import shutil
import signal
import tarfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import Stack
from tests.support.processes import children, wait_for_command_naming, wait_until_unused
from worker.demo_model import ensure_demo_model
from worker.storage import Storage

pytestmark = pytest.mark.e2e

DEADLINE = 300.0
# A killed worker's processes are gone within this many seconds, its warm processes (which never
# end by themselves) and their tools among them. A cancel's revoke goes through the broker first
# (left alone, a revoked chunk's kernel was seen to hang).
KILLED_DEADLINE = 5.0
CANCELLED_DEADLINE = 30.0
REL_TOL = 1e-6
ONE_CHUNK = {
    "lookup_strategy": "FIXED_CHUNKS",
    "fixed_lookup_chunks": 1,
    "loss_strategy": "FIXED_CHUNKS",
    "fixed_analysis_chunks": 1,
}
FIXED = {
    "lookup_strategy": "FIXED_CHUNKS",
    "fixed_lookup_chunks": 3,
    "loss_strategy": "FIXED_CHUNKS",
    "fixed_analysis_chunks": 4,
}
DYNAMIC = {
    "lookup_strategy": "DYNAMIC_CHUNKS",
    "dynamic_locations_per_lookup": 4,
    "loss_strategy": "DYNAMIC_CHUNKS",
    "dynamic_events_per_analysis": 500,
    "dynamic_chunks_max": 10,
}


def outputs(stack: Stack, analysis: int, folder: Path) -> dict[str, list[dict[str, str]]]:
    """The CSV outputs of an analysis, downloaded through the client, by file name."""
    stack.client().download_output(analysis, download_path=str(folder))
    archive = folder / f"analysis_{analysis}_output.tar.gz"
    tables = {}
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.name.endswith(".csv"):
                text = tar.extractfile(member).read().decode()  # type: ignore[union-attr]
                tables[Path(member.name).name] = list(csv.DictReader(io.StringIO(text)))
    return tables


def assert_same_outputs(
    left: dict[str, list[dict[str, str]]], right: dict[str, list[dict[str, str]]]
) -> None:
    assert sorted(left) == sorted(right)
    assert left, "no outputs"
    for name in left:
        assert len(left[name]) == len(right[name]), name
        for row_l, row_r in zip(left[name], right[name], strict=True):
            assert row_l.keys() == row_r.keys()
            for column, value in row_l.items():
                other = row_r[column]
                try:
                    assert math.isclose(
                        float(value), float(other), rel_tol=REL_TOL, abs_tol=1e-9
                    ), (name, column, value, other)
                except ValueError:
                    assert value == other, (name, column)


def sub_task_metrics(stack: Stack, queue: str) -> dict[str, float]:
    """The model's sub-task counters and run-time histogram from GET /metrics, keyed
    `<stage> <STATUS>`, `<stage> count` and `<stage> sum`."""
    body = requests.get(f"{stack.api_url}/metrics", timeout=10).text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.labels.get("model") != queue:
                continue
            stage = sample.labels.get("stage")
            if sample.name == "oasis_sub_tasks_total":
                found[f"{stage} {sample.labels['status']}"] = sample.value
            elif sample.name == "oasis_sub_task_duration_seconds_count":
                found[f"{stage} count"] = sample.value
            elif sample.name == "oasis_sub_task_duration_seconds_sum":
                found[f"{stage} sum"] = sample.value
    return found


def run_seconds(task: dict[str, Any]) -> float:
    start, end = (datetime.fromisoformat(task[key]) for key in ("start_time", "end_time"))
    return (end - start).total_seconds()


def run_to_completion(stack: Stack, analysis: int) -> None:
    client = stack.client()
    assert client.run_generate(analysis, poll_interval=0.5) is True
    assert client.run_analysis(analysis, poll_interval=0.5) is True


@pytest.fixture(scope="module")
def reference(
    stack: Stack,
    new_model: Callable[..., dict[str, Any]],
    new_analysis: Callable[..., int],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, list[dict[str, str]]]:
    """The outputs of the analysis in one chunk per stage."""
    model = new_model(ONE_CHUNK)
    analysis = new_analysis(model)
    with stack.worker(model["queue_name"], concurrency=2):
        run_to_completion(stack, analysis)
    details = stack.client().analyses.get(analysis).json()
    assert (details["lookup_chunks"], details["analysis_chunks"]) == (1, 1)
    return outputs(stack, analysis, tmp_path_factory.mktemp("reference"))


@pytest.mark.parametrize(
    ("chunking", "chunks"), [(FIXED, (3, 4)), (DYNAMIC, (3, 3))], ids=["fixed", "dynamic"]
)
def test_many_chunks_give_the_outputs_of_one(
    stack: Stack,
    new_model: Callable[..., dict[str, Any]],
    new_analysis: Callable[..., int],
    reference: dict[str, list[dict[str, str]]],
    tmp_path: Path,
    chunking: dict[str, Any],
    chunks: tuple[int, int],
) -> None:
    model = new_model(chunking)
    analysis = new_analysis(model)
    with stack.worker(model["queue_name"], concurrency=2):
        run_to_completion(stack, analysis)
    client = stack.client()
    details = client.analyses.get(analysis).json()
    assert (details["lookup_chunks"], details["analysis_chunks"]) == chunks
    sub_tasks = client.analyses.sub_task_list(analysis).json()
    assert len(sub_tasks) == chunks[0] + 5 + chunks[1] + 5
    assert {t["status"] for t in sub_tasks} == {"COMPLETED"}
    assert details["status_count"]["COMPLETED"] == details["status_count"]["TOTAL"]
    metrics = sub_task_metrics(stack, model["queue_name"])
    for stage, count in zip(("inputs", "losses"), chunks, strict=True):
        for status in ("QUEUED", "STARTED", "COMPLETED"):
            assert metrics[f"{stage} {status}"] == count + 5, (stage, status, metrics)
        assert metrics[f"{stage} count"] == count + 5
    assert not {key for key in metrics if key.split()[1] in ("ERROR", "RETRIED", "CANCELLED")}
    assert metrics["inputs sum"] + metrics["losses sum"] == pytest.approx(
        sum(run_seconds(task) for task in sub_tasks), rel=1e-6
    )
    assert_same_outputs(reference, outputs(stack, analysis, tmp_path))


def wait_for_sub_task(stack: Stack, analysis: int, slug_prefix: str, status: str) -> dict[str, Any]:
    client = stack.client()
    stop = time.monotonic() + DEADLINE
    while time.monotonic() < stop:
        for task in client.analyses.sub_task_list(analysis).json():
            if task["slug"].startswith(slug_prefix) and task["status"] == status:
                return dict(task)
        time.sleep(0.2)  # polling with a deadline
    raise TimeoutError(f"no {slug_prefix}* sub-task {status} within {DEADLINE} s")


def wait_for_status(stack: Stack, analysis: int, statuses: set[str]) -> dict[str, Any]:
    client = stack.client()
    stop = time.monotonic() + DEADLINE
    while time.monotonic() < stop:
        details: dict[str, Any] = client.analyses.get(analysis).json()
        if details["status"] in statuses:
            return details
        time.sleep(0.2)  # polling with a deadline
    raise TimeoutError(f"analysis {analysis} not in {statuses} within {DEADLINE} s")


def test_a_worker_killed_mid_chunk_loses_nothing(
    stack: Stack,
    new_model: Callable[..., dict[str, Any]],
    new_analysis: Callable[..., int],
    reference: dict[str, list[dict[str, str]]],
    tmp_path: Path,
) -> None:
    model = new_model(FIXED)
    analysis = new_analysis(model)
    client = stack.client()
    # A short visibility timeout, so the killed worker's chunk comes back within the test.
    fast_redelivery = {"OASIS_AUTOSCALER_VISIBILITY_TIMEOUT_SECONDS": "20"}
    with stack.worker(model["queue_name"], env=fast_redelivery):
        assert client.run_generate(analysis, poll_interval=0.5) is True
    with stack.worker(model["queue_name"], env=fast_redelivery) as victim:
        client.analyses.run(analysis)
        running = stopped_mid_chunk(stack, analysis, victim.pid)
        # Its pool processes, their warm processes and guards, and the tools running the chunk.
        descendants = psutil.Process(victim.pid).children(recursive=True)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
    # Nothing of the killed worker runs on: a warm process lives until its owner goes, so one
    # left behind is caught however short the chunk. Nothing writes into the run folder.
    _, left = psutil.wait_procs(descendants, timeout=KILLED_DEADLINE)
    assert not left, [_described(p) for p in left]
    wait_until_unused(run_dir(stack, analysis), KILLED_DEADLINE)
    with stack.worker(model["queue_name"], env=fast_redelivery, concurrency=2):
        details = wait_for_status(stack, analysis, {"RUN_COMPLETED", "RUN_ERROR"})
    assert details["status"] == "RUN_COMPLETED", client.analyses.get(analysis).text
    tasks = {t["slug"]: t for t in client.analyses.sub_task_list(analysis).json()}
    assert tasks[running["slug"]]["status"] == "COMPLETED"
    assert tasks[running["slug"]]["worker"] != running["worker"]
    assert_same_outputs(reference, outputs(stack, analysis, tmp_path))


def _described(process: psutil.Process) -> str:
    try:
        return f"{process.pid} {' '.join(process.cmdline())}"
    except psutil.Error:
        return str(process.pid)


def stopped_mid_chunk(stack: Stack, analysis: int, worker: int) -> dict[str, Any]:
    """Stop (SIGSTOP) `worker` and its pool processes while it runs a loss chunk, and return
    that chunk's record. A warm chunk takes well under a second, so the one seen running may
    have ended before a kill lands; stopped, the pool processes write no record, so the chunk
    still STARTED is the one being run. If it was between chunks, it goes on and is stopped
    again."""
    client = stack.client()
    stop = time.monotonic() + DEADLINE
    while time.monotonic() < stop:
        wait_for_command_naming(run_dir(stack, analysis))  # the kernel is running
        # Each pool process leads a group of its own (worker/group_guard.py): each by its pid.
        frozen = [worker, *children(worker)]
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        for task in client.analyses.sub_task_list(analysis).json():
            if task["slug"].startswith("generate-losses-chunk") and task["status"] == "STARTED":
                return dict(task)
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    raise TimeoutError(f"worker {worker} not stopped in a loss chunk within {DEADLINE} s")


def test_a_cancelled_run_leaves_nothing_queued(
    stack: Stack,
    new_model: Callable[..., dict[str, Any]],
    new_analysis: Callable[..., int],
) -> None:
    model = new_model({**FIXED, "fixed_analysis_chunks": 8})
    # Chunks of a second or more: the cancel lands while some still wait (warm, the demo's take
    # half a second each).
    analysis = new_analysis(model, samples=1000)
    client = stack.client()
    with stack.worker(model["queue_name"]):
        assert client.run_generate(analysis, poll_interval=0.5) is True
        client.analyses.run(analysis)
        wait_for_sub_task(stack, analysis, "generate-losses-chunk", "STARTED")
        wait_for_command_naming(run_dir(stack, analysis))  # the kernel is running
        assert client.analyses.cancel(analysis).json()["status"] == "RUN_CANCELLED"
        # The running chunk's kernel processes are stopped with it.
        wait_until_unused(run_dir(stack, analysis), CANCELLED_DEADLINE)
        tasks = client.analyses.sub_task_list(analysis).json()
        assert not [t for t in tasks if t["status"] in ("PENDING", "QUEUED", "STARTED")]
        assert "CANCELLED" in {t["status"] for t in tasks}
        # The worker drains what was queued without doing it, and the run stays cancelled.
        stop = time.monotonic() + DEADLINE
        while stack_queue_depth(stack, model["queue_name"]) and time.monotonic() < stop:
            time.sleep(0.2)  # polling with a deadline
        assert stack_queue_depth(stack, model["queue_name"]) == 0
    assert client.analyses.get(analysis).json()["status"] == "RUN_CANCELLED"
    tasks = client.analyses.sub_task_list(analysis).json()
    assert not [t for t in tasks if t["status"] in ("PENDING", "QUEUED", "STARTED")]
    # Counted once, by the API's cancel: the worker that drained their messages did not.
    metrics = sub_task_metrics(stack, model["queue_name"])
    statuses = [t["status"] for t in tasks]
    assert metrics["losses CANCELLED"] == statuses.count("CANCELLED")
    assert metrics.get("losses COMPLETED", 0) == metrics.get("losses count", 0)
    assert (
        metrics.get("losses COMPLETED", 0)
        == statuses.count("COMPLETED") - metrics["inputs COMPLETED"]
    )


def run_dir(stack: Stack, analysis: int) -> Path:
    return Storage(stack.data_dir).run_dir(analysis)


def stack_queue_depth(stack: Stack, queue: str) -> int:
    # A queue with no worker, sub-task nor message is left out, as the platform's.
    entries = [q for q in stack.client().queue().json() if q["name"] == queue]
    return int(entries[0]["queue_message_count"]) if entries else 0


def test_a_failing_chunk_is_retried_then_reported(
    stack: Stack,
    new_model: Callable[..., dict[str, Any]],
    new_analysis: Callable[..., int],
    tmp_path: Path,
) -> None:
    # A model whose footprint is cut short: every loss chunk fails in the kernel.
    broken = tmp_path / "broken-model"
    demo = ensure_demo_model(stack.data_dir / "demo-model")
    shutil.copytree(demo.model_data_dir.parent, broken)
    footprint = broken / demo.model_data_dir.name / "footprint.bin"
    footprint.write_bytes(footprint.read_bytes()[:64])
    model = new_model({**FIXED, "fixed_analysis_chunks": 2})
    analysis = new_analysis(model)
    client = stack.client()
    env = {
        "OASIS_AUTOSCALER_MODEL_DATA_DIR": str(broken),
        "OASIS_AUTOSCALER_MAX_RETRIES": "2",
        "OASIS_AUTOSCALER_RETRY_BACKOFF_SECONDS": "0.2",
    }
    with stack.worker(model["queue_name"], env=env):
        assert client.run_generate(analysis, poll_interval=0.5) is True
        assert client.run_analysis(analysis, poll_interval=0.5) is False
    details = client.analyses.get(analysis).json()
    assert details["status"] == "RUN_ERROR"
    failed = [t for t in client.analyses.sub_task_list(analysis).json() if t["status"] == "ERROR"]
    assert len(failed) == 1
    assert failed[0]["retry_count"] == 2
    tasks = client.analyses.sub_task_list(analysis).json()
    metrics = sub_task_metrics(stack, model["queue_name"])
    assert metrics["losses ERROR"] == 1
    assert metrics["losses RETRIED"] == sum(t["retry_count"] for t in tasks)
    assert metrics["losses CANCELLED"] == [t["status"] for t in tasks].count("CANCELLED")
    # Every attempt that started ended completed, retried or in error.
    assert metrics["losses STARTED"] == sum(
        metrics.get(f"losses {status}", 0) for status in ("COMPLETED", "RETRIED", "ERROR")
    )
    log = client.task_status.error_log.get(failed[0]["id"]).text
    assert "Traceback" in log
    assert "Traceback" in client.analyses.run_traceback_file.get(analysis).text
