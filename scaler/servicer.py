"""KEDA's ExternalScaler service over a `StateView`: one model per ScaledObject trigger.

The metric is the number of workers the model asks for (its share of the fleet budget when one
is set), against a fixed target of 1, so that an HPA with metricType AverageValue (and
tolerance 0) lands on exactly that many replicas.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import NoReturn

import grpc

from protos import externalscaler_pb2 as pb
from protos import externalscaler_pb2_grpc as pb_grpc
from scaler.state import ModelState, StateView

MODEL_KEY = "model"
TARGET_PER_WORKER = 1


def metric_name(model: str) -> str:
    """A metric name KEDA and the HPA accept (lower case, digits and dashes) for `model`."""
    return "oasis-workers-" + re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")


class ExternalScalerServicer(pb_grpc.ExternalScalerServicer):
    def __init__(self, view: StateView, *, heartbeat_seconds: float = 1.0) -> None:
        self._view = view
        # How often a waiting stream checks that its client is still there.
        self._heartbeat = heartbeat_seconds

    def IsActive(
        self, request: pb.ScaledObjectRef, context: grpc.ServicerContext
    ) -> pb.IsActiveResponse:
        _, state = self._resolve(request, context)
        return pb.IsActiveResponse(result=state.granted > 0)

    def StreamIsActive(
        self, request: pb.ScaledObjectRef, context: grpc.ServicerContext
    ) -> Iterator[pb.IsActiveResponse]:
        model, _ = self._resolve(request, context)
        seen, was_active = -1, False
        while context.is_active():
            seen, state = self._view.wait_for_change(model, seen, self._heartbeat)
            if state is None:
                _abort_unknown(context, model)
            active = state.granted > 0
            # KEDA acts only on `true`: send it when the model wakes (and when the stream opens on
            # a model that already has work), not on every change.
            if active and not was_active:
                yield pb.IsActiveResponse(result=True)
            was_active = active

    def GetMetricSpec(
        self, request: pb.ScaledObjectRef, context: grpc.ServicerContext
    ) -> pb.GetMetricSpecResponse:
        model, _ = self._resolve(request, context)
        spec = pb.MetricSpec(
            metricName=metric_name(model),
            targetSize=TARGET_PER_WORKER,
            targetSizeFloat=float(TARGET_PER_WORKER),
        )
        return pb.GetMetricSpecResponse(metricSpecs=[spec])

    def GetMetrics(
        self, request: pb.GetMetricsRequest, context: grpc.ServicerContext
    ) -> pb.GetMetricsResponse:
        model, state = self._resolve(request.scaledObjectRef, context)
        granted = state.granted
        # Exactly one value: the HPA sums every value it is given.
        value = pb.MetricValue(
            metricName=request.metricName or metric_name(model),
            metricValue=granted,
            metricValueFloat=float(granted),
        )
        return pb.GetMetricsResponse(metricValues=[value])

    def _resolve(
        self, ref: pb.ScaledObjectRef, context: grpc.ServicerContext
    ) -> tuple[str, ModelState]:
        model = ref.scalerMetadata.get(MODEL_KEY, "").strip()
        if not model:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"ScaledObject {ref.namespace}/{ref.name}: trigger metadata has no '{MODEL_KEY}'; "
                "set it to the model's queue name <supplier>-<model>-<version>, "
                "e.g. OasisLMF-PiWind-1",
            )
        state = self._view.get(model)
        if state is None:
            _abort_unknown(context, model)
        return model, state


def _abort_unknown(context: grpc.ServicerContext, model: str) -> NoReturn:
    context.abort(
        grpc.StatusCode.NOT_FOUND,
        f"model {model!r} is not known to the scaler; the trigger's '{MODEL_KEY}' metadata must "
        "name a registered model by its queue name <supplier>-<model>-<version>",
    )
    raise AssertionError("context.abort returned")  # abort always raises
