"""`oasis-autoscaler up`: the whole stack on this machine until Ctrl-C."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from cli.local.run import DemoThread, add_stack_flags, running_stack, watch


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "up",
        help="run the whole stack on this machine until Ctrl-C",
        description="Run a private Redis, the API (SQLite in the data dir), the scaler, and a "
        "local stand-in for KEDA that starts and stops real worker processes for every "
        "registered model, until Ctrl-C. Settings come from OASIS_AUTOSCALER_* environment "
        "variables; these flags override them.",
    )
    add_stack_flags(parser)
    parser.add_argument("--demo", action="store_true", help="also run the demo analysis")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, console: Console) -> int:
    with running_stack(args, console) as (stack, stopping):
        demo = DemoThread(stack, args.demo_locations, console) if args.demo else None
        return watch(stack, stopping, console, until=None, demo=demo)
