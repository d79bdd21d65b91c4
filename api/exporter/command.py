"""`oasis-autoscaler exporter`: publish a running OasisPlatform's queue status as our metrics."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console

from scaler.settings_flags import add_setting_flags, flag_overrides

FLAGS: dict[str, type] = {
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
        "/metrics, with /healthz. Settings come from OASIS_AUTOSCALER_EXPORTER_* variables "
        "(the password also from OASIS_AUTOSCALER_EXPORTER_PASSWORD_FILE); these flags "
        "override them. --websocket-url '' reads the REST queue status only.",
    )
    add_setting_flags(parser, FLAGS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, console: Console) -> int:
    from api.exporter.service import running
    from api.exporter.settings import ExporterSettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = ExporterSettings(**flag_overrides(args, FLAGS))
    except ValidationError as error:
        err = Console(stderr=True)
        for detail in error.errors():
            where = ".".join(str(part) for part in detail["loc"]) or "settings"
            err.print(f"[bold red]error:[/] {where}: {detail['msg']}", highlight=False)
        return 2
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    with running(settings) as (_, port):
        console.print(
            f"exporter reading {settings.platform_url} "
            f"(websocket {settings.effective_websocket_url or 'off'}), "
            f"serving http://{settings.host}:{port}/metrics",
            highlight=False,
        )
        stopped.wait()
    return 0
