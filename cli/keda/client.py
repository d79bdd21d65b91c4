"""The scaler's calls as KEDA makes them, for the local stand-in, benchmarks and tests.

KEDA names the model in the trigger's metadata, asks GetMetricSpec then GetMetrics with the
spec's metric name, and IsActive, on every poll and HPA sync, within about 3 s; it holds one
StreamIsActive open per external-push trigger.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import grpc

from protos import externalscaler_pb2 as pb
from protos import externalscaler_pb2_grpc as pb_grpc
from scaler.servicer import MODEL_KEY

# KEDA's budget for one round of calls (the metrics server's timeout, one retry included).
CALL_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True)
class Answer:
    active: bool
    metric: float


class KedaClient:
    """One channel to the scaler, as KEDA keeps one per scaler address."""

    def __init__(self, address: str, credentials: grpc.ChannelCredentials | None = None) -> None:
        self.channel = (
            grpc.secure_channel(address, credentials)
            if credentials
            else grpc.insecure_channel(address)
        )
        self.stub = pb_grpc.ExternalScalerStub(self.channel)  # type: ignore[no-untyped-call]
        self.address, self.credentials = address, credentials
        # For `pushes`: made in the event loop that uses it.
        self._aio: grpc.aio.Channel | None = None

    @staticmethod
    def ref(model: str, name: str | None = None, namespace: str = "default") -> pb.ScaledObjectRef:
        return pb.ScaledObjectRef(
            name=name or f"workers-{model.lower()}",
            namespace=namespace,
            scalerMetadata={MODEL_KEY: model, "scalerAddress": "local"},
        )

    def ask(self, model: str, timeout: float = CALL_TIMEOUT_SECONDS) -> Answer:
        """GetMetricSpec, GetMetrics and IsActive, as one poll or HPA sync makes them."""
        ref = self.ref(model)
        spec = self.stub.GetMetricSpec(ref, timeout=timeout).metricSpecs[0]
        request = pb.GetMetricsRequest(scaledObjectRef=ref, metricName=spec.metricName)
        values = self.stub.GetMetrics(request, timeout=timeout).metricValues
        active = self.stub.IsActive(ref, timeout=timeout).result
        target = spec.targetSizeFloat or float(spec.targetSize)
        # KEDA reads the float field when set, else the integer one; the HPA sums the values.
        total = sum(v.metricValueFloat or float(v.metricValue) for v in values)
        return Answer(active, total / target if target > 0 else 0.0)

    def stream(self, model: str) -> Iterator[bool]:
        """The StreamIsActive messages for `model`, until the stream ends or fails."""
        call = self.stub.StreamIsActive(self.ref(model))
        try:
            for message in call:
                yield message.result
        finally:
            call.cancel()

    async def pushes(self, model: str) -> AsyncIterator[bool]:
        """`stream` for an asyncio loop: many streams held open without a thread each (a
        blocking stream's thread wakes ten times a second in grpc's wait loop)."""
        if self._aio is None:
            self._aio = (
                grpc.aio.secure_channel(self.address, self.credentials)
                if self.credentials
                else grpc.aio.insecure_channel(self.address)
            )
        stub = pb_grpc.ExternalScalerStub(self._aio)  # type: ignore[no-untyped-call]
        call = stub.StreamIsActive(self.ref(model))
        try:
            async for message in call:
                yield message.result
        finally:
            call.cancel()

    async def close_pushes(self) -> None:
        if self._aio is not None:
            await self._aio.close(None)
            self._aio = None

    def close(self) -> None:
        self.channel.close()
