"""`oasis-autoscaler`: one command line, a subcommand per service and per tool."""

from __future__ import annotations

import argparse
import sys
from types import ModuleType

from rich.console import Console

from cli.base import USAGE_STATUS, CommandError, print_error
from cli.commands import (
    api,
    demo,
    exporter,
    manifests,
    plan,
    scaler,
    simulate,
    subtasks,
    up,
    version,
    worker,
)

# In the order `--help` lists them.
COMMANDS: tuple[ModuleType, ...] = (
    version,
    plan,
    api,
    worker,
    scaler,
    exporter,
    up,
    demo,
    subtasks,
    simulate,
    manifests,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oasis-autoscaler",
        description="Per-model worker autoscaling for Oasis-style catastrophe-model platforms.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version.version()}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status: int = args.func(args, Console())
    except CommandError as error:
        print_error(error)
        return USAGE_STATUS
    return status


if __name__ == "__main__":
    sys.exit(main())
