"""The scaler servicer over a real gRPC channel on loopback, as KEDA calls it."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protos import externalscaler_pb2 as pb
from protos import externalscaler_pb2_grpc as pb_grpc
from scaler.configuration import ScalingConfiguration
from scaler.server import SERVICE_NAME, running_server
from scaler.servicer import metric_name
from scaler.state import InMemoryStateView, ModelState

pytestmark = pytest.mark.integration

MODEL = "OasisLMF-PiWind-1"
DYNAMIC = ScalingConfiguration.model_validate(
    {"scaling_strategy": "DYNAMIC_TASKS", "chunks_per_worker": 2, "worker_count_max": 3}
)
DEADLINE = 5.0


@pytest.fixture
def view() -> InMemoryStateView:
    return InMemoryStateView({MODEL: ModelState(DYNAMIC)})


@pytest.fixture
def channel(view: InMemoryStateView) -> Iterator[grpc.Channel]:
    with (
        running_server(view, heartbeat_seconds=0.2) as port,
        grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        yield channel


@pytest.fixture
def stub(channel: grpc.Channel) -> pb_grpc.ExternalScalerStub:
    return pb_grpc.ExternalScalerStub(channel)


def ref(model: str | None = MODEL, **metadata: str) -> pb.ScaledObjectRef:
    if model is not None:
        metadata["model"] = model
    # KEDA passes the whole trigger metadata, scalerAddress included.
    metadata.setdefault("scalerAddress", "oasis-scaler:9090")
    return pb.ScaledObjectRef(name="worker-piwind", namespace="oasis", scalerMetadata=metadata)


def metrics(stub: pb_grpc.ExternalScalerStub, model: str = MODEL) -> pb.GetMetricsResponse:
    request = pb.GetMetricsRequest(scaledObjectRef=ref(model), metricName=metric_name(model))
    response: pb.GetMetricsResponse = stub.GetMetrics(request, timeout=DEADLINE)
    return response


def test_metric_spec_is_one_spec_with_target_one(stub: pb_grpc.ExternalScalerStub) -> None:
    response = stub.GetMetricSpec(ref(), timeout=DEADLINE)
    assert len(response.metricSpecs) == 1
    spec = response.metricSpecs[0]
    assert spec.metricName == "oasis-workers-oasislmf-piwind-1"
    assert spec.targetSizeFloat == 1.0
    assert spec.targetSize == 1


@pytest.mark.parametrize(
    ("analyses", "pending", "desired"),
    [(0, 0, 0), (1, 0, 1), (2, 4, 2), (2, 5, 3), (2, 500, 3)],
    ids=["idle", "splitting", "4 chunks", "5 chunks", "capped"],
)
def test_metrics_return_exactly_the_desired_workers(
    view: InMemoryStateView,
    stub: pb_grpc.ExternalScalerStub,
    analyses: int,
    pending: int,
    desired: int,
) -> None:
    view.put(MODEL, ModelState(DYNAMIC, analyses=analyses, pending=pending))
    response = metrics(stub)
    assert len(response.metricValues) == 1
    value = response.metricValues[0]
    assert (value.metricName, value.metricValueFloat, value.metricValue) == (
        metric_name(MODEL),
        float(desired),
        desired,
    )
    assert stub.IsActive(ref(), timeout=DEADLINE).result is (desired > 0)


def test_the_floor_keeps_a_model_warm(
    view: InMemoryStateView, stub: pb_grpc.ExternalScalerStub
) -> None:
    view.put(MODEL, ModelState(DYNAMIC.model_copy(update={"worker_count_min": 2})))
    assert metrics(stub).metricValues[0].metricValueFloat == 2.0
    assert stub.IsActive(ref(), timeout=DEADLINE).result is True


def test_a_configuration_change_shows_on_the_next_call(
    view: InMemoryStateView, stub: pb_grpc.ExternalScalerStub
) -> None:
    view.put(MODEL, ModelState(DYNAMIC, analyses=1, pending=10))
    assert metrics(stub).metricValues[0].metricValueFloat == 3.0
    view.put(MODEL, ModelState(DYNAMIC.model_copy(update={"worker_count_max": 8}), 1, 10))
    assert metrics(stub).metricValues[0].metricValueFloat == 5.0


CALLS = {
    "IsActive": lambda stub, r: stub.IsActive(r, timeout=DEADLINE),
    "GetMetricSpec": lambda stub, r: stub.GetMetricSpec(r, timeout=DEADLINE),
    "GetMetrics": lambda stub, r: stub.GetMetrics(
        pb.GetMetricsRequest(scaledObjectRef=r, metricName="x"), timeout=DEADLINE
    ),
    "StreamIsActive": lambda stub, r: next(stub.StreamIsActive(r, timeout=DEADLINE)),
}


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
@pytest.mark.parametrize("model", [None, "", "   "], ids=["absent", "empty", "blank"])
def test_a_missing_model_is_invalid_argument(
    stub: pb_grpc.ExternalScalerStub, call: object, model: str | None
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        call(stub, ref(model))  # type: ignore[operator]
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "trigger metadata has no 'model'" in caught.value.details()
    assert "oasis/worker-piwind" in caught.value.details()


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_an_unknown_model_is_not_found(stub: pb_grpc.ExternalScalerStub, call: object) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        call(stub, ref("OasisLMF-NoSuchModel-1"))  # type: ignore[operator]
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert "'OasisLMF-NoSuchModel-1' is not known" in caught.value.details()


class StreamReader:
    """Reads a StreamIsActive call on a thread, so the test can wait on messages with a deadline."""

    def __init__(self, call: grpc.Call) -> None:
        self.call = call
        self.messages: queue.Queue[bool | grpc.RpcError] = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for message in self.call:  # type: ignore[attr-defined]
                self.messages.put(message.result)
        except grpc.RpcError as error:
            self.messages.put(error)

    def next(self) -> bool | grpc.RpcError:
        return self.messages.get(timeout=DEADLINE)

    def close(self) -> None:
        self.call.cancel()
        self._thread.join(timeout=DEADLINE)


@pytest.fixture
def open_stream(stub: pb_grpc.ExternalScalerStub) -> Iterator[object]:
    readers: list[StreamReader] = []

    def opener(model: str = MODEL) -> StreamReader:
        reader = StreamReader(stub.StreamIsActive(ref(model)))
        readers.append(reader)
        return reader

    yield opener
    for reader in readers:
        reader.close()


def wait_until_streaming(view: InMemoryStateView, model: str) -> None:
    """Return once a server-side stream is blocked waiting for `model`'s next change."""
    stop = time.monotonic() + DEADLINE
    while view.waiting(model) == 0:
        if time.monotonic() > stop:
            pytest.fail(f"no stream waited on {model} within {DEADLINE} s")
        time.sleep(0.005)  # polling a condition with a deadline, not waiting for state


def test_stream_sends_true_when_an_idle_model_gets_work(
    view: InMemoryStateView, open_stream: object
) -> None:
    reader = open_stream()  # type: ignore[operator]
    wait_until_streaming(view, MODEL)
    assert reader.messages.empty(), "an idle model must not be announced"
    view.put(MODEL, ModelState(DYNAMIC, analyses=1, pending=0))
    assert reader.next() is True
    # More work on an active model is not a wake-up; going idle sends nothing.
    view.put(MODEL, ModelState(DYNAMIC, analyses=1, pending=6))
    view.put(MODEL, ModelState(DYNAMIC))
    wait_until_streaming(view, MODEL)
    view.put(MODEL, ModelState(DYNAMIC, analyses=0, pending=3))
    assert reader.next() is True
    assert reader.messages.empty()


def test_stream_on_a_model_with_work_sends_true_at_once(
    view: InMemoryStateView, open_stream: object
) -> None:
    view.put(MODEL, ModelState(DYNAMIC, analyses=2, pending=2))
    assert open_stream().next() is True  # type: ignore[operator]


def test_streams_of_different_models_are_independent(
    view: InMemoryStateView, open_stream: object
) -> None:
    other = "OasisLMF-Other-2"
    view.put(other, ModelState(DYNAMIC))
    first, second = open_stream(MODEL), open_stream(other)  # type: ignore[operator]
    wait_until_streaming(view, MODEL)
    wait_until_streaming(view, other)
    view.put(other, ModelState(DYNAMIC, analyses=1))
    assert second.next() is True
    assert first.messages.empty()


def test_stream_ends_with_not_found_when_the_model_goes_away(
    view: InMemoryStateView, open_stream: object
) -> None:
    reader = open_stream()  # type: ignore[operator]
    wait_until_streaming(view, MODEL)
    view.remove(MODEL)
    error = reader.next()
    assert isinstance(error, grpc.RpcError)
    assert error.code() is grpc.StatusCode.NOT_FOUND


def test_health_reports_serving(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE_NAME):
        response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=DEADLINE)
        assert response.status == health_pb2.HealthCheckResponse.SERVING
