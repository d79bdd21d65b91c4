"""`oasis-autoscaler scaler`: serve the KEDA external scaler from the published metrics."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from cli.base import UsageError, add_setting_flags, log_to_stderr, settings_from, stop_signal
from scaler.budget import Preemption

if TYPE_CHECKING:
    from scaler.settings import ScalerSettings

# Setting -> flag type; each flag overrides its OASIS_AUTOSCALER_SCALER_* variable.
FLAGS: dict[str, Any] = {
    "host": str,
    "port": int,
    "metrics_port": int,
    "source": str,
    "prometheus_url": str,
    "interval_seconds": float,
    "timeout_seconds": float,
    "max_age_seconds": float,
    "grpc_threads": int,
    "tls_cert_file": Path,
    "tls_key_file": Path,
    "tls_client_ca_file": Path,
    "total_worker_limit": int,
    # A JSON object: model (queue name) -> weight.
    "model_weights": json.loads,
    "budget_preemption": str,
    "worker_start_seconds": float,
}
CHOICES = {
    "source": ["scrape", "prometheus"],
    "budget_preemption": [mode.value for mode in Preemption],
}


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "scaler",
        help="serve the KEDA external scaler (gRPC) from the published metrics",
        description="Serve KEDA's external scaler: read the models' metrics (scraping the API's "
        "/metrics, or querying Prometheus) every interval, and answer KEDA from memory. Settings "
        "come from OASIS_AUTOSCALER_SCALER_* environment variables; these flags override them.",
    )
    add_setting_flags(parser, FLAGS, CHOICES)
    parser.add_argument(
        "--scrape-target",
        dest="scrape_targets",
        action="append",
        default=None,
        metavar="URL",
        help="a publisher's /metrics URL; repeat for several (replicas of the API)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, console: Console) -> int:
    from scaler.service import running_scaler
    from scaler.settings import ScalerSettings

    settings = settings_from(ScalerSettings, args, [*FLAGS, "scrape_targets"])
    log_to_stderr()
    stopping = stop_signal()
    try:
        with running_scaler(settings) as scaler:
            _greet(console, settings, scaler.port, scaler.metrics_port)
            stopping.wait()
            console.print("stopping the scaler ...", highlight=False, soft_wrap=True)
    except OSError as error:
        raise UsageError(str(error)) from None
    return 0


def _greet(console: Console, settings: ScalerSettings, port: int, metrics_port: int) -> None:
    scheme = "TLS" if settings.tls else "plaintext"
    if settings.tls_client_ca_file:
        scheme += ", client certificates required"
    source = (
        f"PromQL on {settings.prometheus_url}"
        if settings.source == "prometheus"
        else "scraping " + ", ".join(settings.scrape_targets)
    )
    console.print(
        f"scaler  gRPC on {settings.host}:{port} ({scheme})", highlight=False, soft_wrap=True
    )
    console.print(
        f"metrics http://{settings.host}:{metrics_port}/metrics", highlight=False, soft_wrap=True
    )
    console.print(
        f"source  {source} every {settings.interval_seconds:g} s "
        f"(max state age {settings.max_age_seconds:g} s)",
        highlight=False,
        soft_wrap=True,
    )
    sys.stdout.flush()
