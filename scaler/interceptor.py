"""A gRPC interceptor in front of the ExternalScaler service: the staleness gate and call timing.

Kept out of the servicer, which stays a thin mapping from the view to KEDA's messages. Health
checking and reflection pass through untouched.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import grpc

from scaler.server import SERVICE_NAME

PREFIX = f"/{SERVICE_NAME}/"
# Why calls may not be answered (None: they may); see scaler.freshness.
StaleReason = Callable[[], str | None]
Observe = Callable[[str, float], None]
# A context manager around each open stream (e.g. a gauge's track_inprogress).
TrackStream = Callable[[], AbstractContextManager[Any]]


class ScalerInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(
        self,
        stale_reason: StaleReason,
        observe: Observe | None = None,
        track_stream: TrackStream | None = None,
    ) -> None:
        self._stale_reason = stale_reason
        self._observe = observe or (lambda method, seconds: None)
        self._track_stream = track_stream or nullcontext

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],  # type: ignore[type-arg]
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:  # type: ignore[type-arg]
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(PREFIX):
            return handler
        name = method.removeprefix(PREFIX)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(name, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _gate(self, context: grpc.ServicerContext) -> None:
        reason = self._stale_reason()
        if reason is not None:
            context.abort(grpc.StatusCode.UNAVAILABLE, reason)

    def _unary(
        self, name: str, behaviour: Callable[[Any, grpc.ServicerContext], Any]
    ) -> Callable[[Any, grpc.ServicerContext], Any]:
        def timed(request: Any, context: grpc.ServicerContext) -> Any:
            began = time.perf_counter()
            try:
                self._gate(context)
                return behaviour(request, context)
            finally:
                self._observe(name, time.perf_counter() - began)

        return timed

    def _stream(
        self, behaviour: Callable[[Any, grpc.ServicerContext], Iterator[Any]]
    ) -> Callable[[Any, grpc.ServicerContext], Iterator[Any]]:
        # A stream is gated when it opens only: one already open keeps waiting through a source
        # outage and sends `true` the moment a recovered state shows work, where a closed one
        # would wait out KEDA's reconnect back-off (up to a minute). Its duration is the
        # connection's life, so it is not timed.
        def gated(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            self._gate(context)
            with self._track_stream():
                yield from behaviour(request, context)

        return gated
