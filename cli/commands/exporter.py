"""`oasis-autoscaler exporter`: publish a running OasisPlatform's queue status as our metrics."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from cli.base import UsageError, add_setting_flags, log_to_stderr, settings_from, stop_signal

# Setting -> flag type; each flag overrides its OASIS_AUTOSCALER_EXPORTER_* variable. The
# client secret has no flag of its own: a variable or a mounted file keeps it off the command
# line.
FLAGS: dict[str, Any] = {
    "platform_url": str,
    "websocket_url": str,
    "username": str,
    "password": str,
    "password_file": Path,
    "client_id": str,
    "client_secret_file": Path,
    "host": str,
    "port": int,
    "resync_seconds": float,
    "models_refresh_seconds": float,
    "max_snapshot_age_seconds": float,
}


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "exporter",
        help="publish a running OasisPlatform's queue status as the scaler's metrics",
        description="Read an OasisPlatform v2 (its queue-status websocket, a slow REST resync, "
        "its models' scaling configurations) and publish the scaler's input metrics on "
        "/metrics, with /healthz. Settings come from OASIS_AUTOSCALER_EXPORTER_* environment "
        "variables (the password also from a file: --password-file, or "
        "OASIS_AUTOSCALER_EXPORTER_PASSWORD_FILE); these flags override them. "
        "--websocket-url '' reads the REST queue status only.",
    )
    add_setting_flags(parser, FLAGS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, console: Console) -> int:
    from api.exporter.service import running
    from api.exporter.settings import ExporterSettings

    settings = settings_from(ExporterSettings, args, FLAGS)
    log_to_stderr()
    stopping = stop_signal()
    try:
        with running(settings) as (_, port):
            console.print(
                f"exporter reading {settings.platform_url} "
                f"(websocket {settings.effective_websocket_url or 'off'}); "
                f"metrics on http://{settings.host}:{port}/metrics",
                highlight=False,
                soft_wrap=True,
            )
            stopping.wait()
    except OSError as error:  # the port taken, or the host not this machine's
        raise UsageError(str(error)) from None
    return 0
