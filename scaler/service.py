"""The scaler service: the refresh loop, the gRPC server KEDA calls, and the scaler's own metrics.

`running_scaler(settings)` starts it all and stops it all on exit; the `scaler` command and the
tests share it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health
from prometheus_client import CollectorRegistry, start_http_server

from scaler.freshness import SourceHealth
from scaler.instruments import ScalerMetrics
from scaler.interceptor import ScalerInterceptor
from scaler.reader import ReaderProcess
from scaler.refresh import Refresher
from scaler.server import create_server, set_serving
from scaler.settings import ScalerSettings
from scaler.sources import Source
from scaler.state import InMemoryStateView

# Unary calls answer from memory in well under a millisecond; only open StreamIsActive calls
# are still running at a stop, and KEDA reconnects those to another replica anyway.
STOP_GRACE_SECONDS = 1.0
# How long the refresh thread may hold the interpreter before a call's thread gets it. Python's
# default (5 ms) is paid several times per call while a read is parsed (gRPC takes the
# interpreter at each step of a call), which made GetMetrics' p99 a hundred times its median.
SWITCH_INTERVAL_SECONDS = 0.0005


@dataclass(frozen=True)
class RunningScaler:
    port: int
    metrics_port: int
    view: InMemoryStateView
    health: SourceHealth


@contextmanager
def running_scaler(
    settings: ScalerSettings,
    *,
    source: Source | None = None,
    registry: CollectorRegistry | None = None,
) -> Iterator[RunningScaler]:
    """Serve until the block exits; `source` replaces the one the settings describe (tests)."""
    registry = registry if registry is not None else CollectorRegistry()
    view = InMemoryStateView()
    record = SourceHealth(settings.max_age_seconds)
    metrics = ScalerMetrics(registry, view, record)
    with ExitStack() as stack:
        stack.callback(sys.setswitchinterval, sys.getswitchinterval())
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
        if source is None:
            owned = ReaderProcess(
                settings,
                on_problems=metrics.report_problems,
                on_target_error=lambda target: metrics.target_errors.labels(target=target).inc(),
            )
            stack.callback(owned.close)
            source = owned
        health_servicer = health.HealthServicer()
        # NOT_SERVING until the first good read: the scaler knows no model before it.
        set_serving(health_servicer, False)
        interceptor = ScalerInterceptor(
            record.stale_reason,
            lambda method, seconds: metrics.rpc_duration.labels(method=method).observe(seconds),
            metrics.open_streams.track_inprogress,
        )
        server = create_server(
            view,
            max_workers=settings.grpc_threads,
            interceptors=[interceptor],
            health_servicer=health_servicer,
        )
        port = _bind(server, settings)
        http_server, _ = start_http_server(settings.metrics_port, settings.host, registry)
        stack.callback(http_server.server_close)
        stack.callback(http_server.shutdown)
        refresher = Refresher(
            source,
            view,
            record,
            interval=settings.interval_seconds,
            metrics=metrics,
            on_serving=lambda serving: set_serving(health_servicer, serving),
            worker_limit=settings.total_worker_limit,
            weights=settings.model_weights,
            preemption=settings.budget_preemption,
        )
        server.start()
        stack.callback(lambda: server.stop(STOP_GRACE_SECONDS).wait())
        refresher.start()
        stack.callback(refresher.stop)
        # Runs first on exit: load balancers and probes see the stop coming.
        stack.callback(health_servicer.enter_graceful_shutdown)
        yield RunningScaler(port, http_server.server_port, view, record)


def _bind(server: grpc.Server, settings: ScalerSettings) -> int:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    address = f"{host}:{settings.port}"
    try:
        if settings.tls:
            port = server.add_secure_port(address, _credentials(settings))
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as error:  # grpc raises on a port in use, older versions return 0
        raise OSError(f"cannot bind the scaler's gRPC server to {address}: {error}") from error
    if port == 0:
        raise OSError(f"cannot bind the scaler's gRPC server to {address}")
    return port


def _credentials(settings: ScalerSettings) -> grpc.ServerCredentials:
    assert settings.tls_cert_file and settings.tls_key_file  # settings.tls says both are set
    key = settings.tls_key_file.read_bytes()
    chain = settings.tls_cert_file.read_bytes()
    ca = settings.tls_client_ca_file.read_bytes() if settings.tls_client_ca_file else None
    # With a client CA, a client without a certificate it signed fails the handshake.
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=ca, require_client_auth=ca is not None
    )
