"""The local KEDA stand-in's loop: answers become replica counts, one model's trouble stops no
other, a failed call changes nothing."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from cli.keda.client import Answer, KedaClient
from cli.keda.timing import KedaTiming
from cli.local.keda import KedaStandIn
from cli.local.pool import PoolCounts
from cli.local.stack import kept_password
from protos import externalscaler_pb2 as pb
from protos import externalscaler_pb2_grpc as pb_grpc

FAST = KedaTiming(polling_interval=0.2, hpa_sync_period=0.1, cooldown_period=0.5, max_replicas=5)


class Unavailable(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "the scaler is down"


@dataclass
class FakeClient:
    answers: dict[str, Answer | grpc.RpcError]

    def ask(self, model: str) -> Answer:
        answer = self.answers[model]
        if isinstance(answer, grpc.RpcError):
            raise answer
        return answer

    async def pushes(self, model: str) -> AsyncIterator[bool]:
        await asyncio.Event().wait()  # no push: the polls do the work here
        yield False

    async def close_pushes(self) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class FakePool:
    broken: set[str]
    replicas: dict[str, int] = field(default_factory=dict)

    def scale(self, queue: str, replicas: int) -> None:
        if queue in self.broken:
            raise OSError("cannot start a worker")
        self.replicas[queue] = replicas

    def counts(self, queue: str) -> PoolCounts:
        return PoolCounts(running=self.replicas.get(queue, 0))


def poll(check: Callable[[], bool], deadline: float = 10.0) -> None:
    stop = time.monotonic() + deadline
    while not check():
        assert time.monotonic() < stop
        time.sleep(0.02)  # polling with a deadline


def stand_in(client: Any, pool: Any) -> KedaStandIn:
    keda = KedaStandIn(client, pool, FAST)
    for model in ("good", "broken", "down"):
        keda.add(model)
    keda.start()
    return keda


def test_answers_become_replicas_and_trouble_stays_with_its_model() -> None:
    client = FakeClient(
        {"good": Answer(True, 3.0), "broken": Answer(True, 2.0), "down": Unavailable()}
    )
    pool = FakePool(broken={"broken"})
    keda = stand_in(client, pool)
    try:
        poll(lambda: pool.replicas.get("good") == 3)
        poll(lambda: "cannot start a worker" in keda.scaling()["broken"].error)
        poll(lambda: "UNAVAILABLE" in keda.scaling()["down"].error)
        # A model whose calls fail keeps what it had (nothing, here), as KEDA without a fallback.
        assert pool.replicas.get("down") == 0
        shown = keda.scaling()["good"]
        assert (shown.replicas, shown.metric, shown.active) == (3, 3.0, True)
        assert shown.workers.running == 3
        # The work ends: the HPA keeps one, KEDA's cooldown takes it to zero.
        client.answers["good"] = Answer(False, 0.0)
        poll(lambda: pool.replicas["good"] == 0)
    finally:
        keda.stop()


def test_a_generated_admin_password_is_kept_in_the_data_dir(tmp_path: Path) -> None:
    first = kept_password(tmp_path / "data")
    assert len(first) >= 16
    # The API created its admin with it once: every later start logs in with the same.
    assert kept_password(tmp_path / "data") == first
    assert (tmp_path / "data" / "admin-password").stat().st_mode & 0o777 == 0o600
    assert kept_password(tmp_path / "other") != first


class Pushing(pb_grpc.ExternalScalerServicer):
    """A scaler whose every model wakes at once over its push stream, and is idle when asked."""

    def StreamIsActive(self, request: Any, context: Any) -> Any:
        yield pb.IsActiveResponse(result=True)
        while context.is_active():
            time.sleep(0.05)  # the stream stays open, as the scaler's does

    def GetMetricSpec(self, request: Any, context: Any) -> Any:
        spec = pb.MetricSpec(metricName="m", targetSize=1, targetSizeFloat=1.0)
        return pb.GetMetricSpecResponse(metricSpecs=[spec])

    def GetMetrics(self, request: Any, context: Any) -> Any:
        value = pb.MetricValue(metricName="m", metricValue=0, metricValueFloat=0.0)
        return pb.GetMetricsResponse(metricValues=[value])

    def IsActive(self, request: Any, context: Any) -> Any:
        return pb.IsActiveResponse(result=False)


def test_every_models_push_stream_is_held_in_one_thread() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
    pb_grpc.add_ExternalScalerServicer_to_server(Pushing(), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    client = KedaClient(f"127.0.0.1:{port}")
    keda = KedaStandIn(client, FakePool(broken=set()), FAST)  # type: ignore[arg-type]
    models = [f"model-{n}" for n in range(20)]
    try:
        before = set(threading.enumerate())
        keda.start()
        for model in models:
            keda.add(model)
        poll(lambda: all(keda.scaling()[m].pushes >= 1 for m in models))
        # The polling thread and the streams' event loop (and grpc's own poller): not one
        # thread per model. The server's threads, one per open stream, are the server's.
        new = [
            t.name
            for t in set(threading.enumerate()) - before
            if not t.name.startswith("ThreadPoolExecutor")
        ]
        assert len(new) <= 3, new
    finally:
        keda.stop()
        server.stop(0)
