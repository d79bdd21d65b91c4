"""Command-line flags that override a service's settings object, one flag per field."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any


def add_setting_flags(parser: argparse.ArgumentParser, flags: Mapping[str, type]) -> None:
    """`--field-name VALUE` for each field; unset flags stay None so the settings decide."""
    for name, kind in flags.items():
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None)


def flag_overrides(args: argparse.Namespace, flags: Mapping[str, type]) -> dict[str, Any]:
    """The fields given on the command line, to pass over the environment's values."""
    return {name: getattr(args, name) for name in flags if getattr(args, name) is not None}
