"""`oasis-autoscaler version`: print the installed version."""

from __future__ import annotations

import argparse
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any

from rich.console import Console


def version() -> str:
    try:
        return package_version("oasis-autoscaler")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("version", help="print the version")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, console: Console) -> int:
    console.print(f"oasis-autoscaler {version()}", highlight=False)
    return 0
