"""The scaler's gRPC server: the ExternalScaler servicer plus standard health checking."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent import futures
from contextlib import contextmanager

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from protos import externalscaler_pb2 as pb
from protos import externalscaler_pb2_grpc as pb_grpc
from scaler.servicer import ExternalScalerServicer
from scaler.state import StateView

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["ExternalScaler"].full_name


def create_server(
    view: StateView,
    *,
    max_workers: int = 256,
    heartbeat_seconds: float = 1.0,
    interceptors: Sequence[grpc.ServerInterceptor] = (),  # type: ignore[type-arg]
    health_servicer: health.HealthServicer | None = None,
) -> grpc.Server:
    """An unstarted server; every open StreamIsActive holds one of the `max_workers` threads.

    Health reports SERVING unless the caller passes its own `health_servicer` to drive.
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers), interceptors=list(interceptors)
    )
    servicer = ExternalScalerServicer(view, heartbeat_seconds=heartbeat_seconds)
    pb_grpc.add_ExternalScalerServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    if health_servicer is None:
        health_servicer = health.HealthServicer()
        set_serving(health_servicer, True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    return server


def set_serving(health_servicer: health.HealthServicer, serving: bool) -> None:
    """Report the whole server and the ExternalScaler service as (not) serving."""
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, status)


@contextmanager
def running_server(
    view: StateView,
    address: str = "127.0.0.1:0",
    *,
    grace_seconds: float = 2.0,
    max_workers: int = 256,
    heartbeat_seconds: float = 1.0,
) -> Iterator[int]:
    """Serve on `address` (port 0 picks a free one) and yield the bound port; stop on exit."""
    server = create_server(view, max_workers=max_workers, heartbeat_seconds=heartbeat_seconds)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind the scaler's gRPC server to {address}")
    server.start()
    try:
        yield port
    finally:
        server.stop(grace_seconds).wait()
