"""`oasis-autoscaler`: one command line, a subcommand per service and for the local stack."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any

from rich.console import Console

from api import cli as api_cli
from api.exporter import command as exporter_command
from scaler import manifests_command, plan_command, service_cli
from scaler.local import cli as up_cli
from scaler.simulate import command as simulate_command
from worker import cli as worker_cli
from worker import subtasks_command


def version() -> str:
    try:
        return package_version("oasis-autoscaler")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oasis-autoscaler",
        description="Per-model worker autoscaling for Oasis-style catastrophe-model platforms.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    version_parser = subparsers.add_parser("version", help="print the version")
    version_parser.set_defaults(func=_print_version)
    plan_command.add_parser(subparsers)
    api_cli.add_parser(subparsers)
    exporter_command.add_parser(subparsers)
    worker_cli.add_parser(subparsers)
    up_cli.add_parser(subparsers)
    service_cli.add_parser(subparsers)
    subtasks_command.add_parser(subparsers)
    simulate_command.add_parser(subparsers)
    manifests_command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    console = Console()
    try:
        status: int = args.func(args, console)
    except plan_command.UsageError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        return 2
    return status


def _print_version(args: Any, console: Console) -> int:
    console.print(f"oasis-autoscaler {version()}", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
