"""`oasis-autoscaler up`: the whole stack on this machine until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path
from typing import Any

from rich.console import Console

from scaler.settings_flags import add_setting_flags, flag_overrides

FLAGS = {"data_dir": Path, "api_port": int, "workers_per_model": int}


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "up",
        help="run the whole stack on this machine",
        description="Run a private Redis, the API (SQLite in the data dir) and a pool of real "
        "worker processes for every registered model, until Ctrl-C. Settings come from "
        "OASIS_AUTOSCALER_* environment variables; these flags override them.",
    )
    add_setting_flags(parser, FLAGS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, console: Console) -> int:
    from scaler.local.settings import StackSettings
    from scaler.local.stack import LocalStack

    overrides = flag_overrides(args, FLAGS)
    stack = LocalStack(StackSettings(**overrides))
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    try:
        stack.start()
        _greet(console, stack)
        while not stopping.is_set():
            for queue in stack.ensure_pools():
                console.print(
                    f"model queue {queue}: started {stack.settings.workers_per_model} workers",
                    highlight=False,
                )
            for child in stack.supervisor.exited():
                console.print(f"[red]{child.name} exited[/] (log: {child.log})", highlight=False)
                return 1
            stopping.wait(stack.settings.discovery_seconds)
    finally:
        console.print("stopping the stack ...", highlight=False)
        stack.stop()
    return 0


def _greet(console: Console, stack: Any) -> None:
    console.print(
        f"API     {stack.api_url}/  (OpenAPI: {stack.api_url}/openapi.json)", highlight=False
    )
    console.print(f"login   {stack.settings.admin_username} / {stack.password}", highlight=False)
    console.print(
        f"data    {stack.data_dir}  (logs in {stack.supervisor.log_dir})", highlight=False
    )
    console.print("Ctrl-C stops everything.", highlight=False)
