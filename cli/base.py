"""What every subcommand shares: setting flags over a settings object, and how errors end a command.

A subcommand is a module in `cli/commands/` with `add_parser(subparsers)` and
`run(args, console) -> int`. A failure the user can fix raises `CommandError` (bad input:
`UsageError`); `main` prints it as one line on stderr (`error: ...`, never wrapped, never a
traceback) and exits 2.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

USAGE_STATUS = 2

Settings = TypeVar("Settings", bound=BaseModel)


class CommandError(Exception):
    """A failure the user can fix (bad input, an unreachable service, ...): the message says
    what and why."""


class UsageError(CommandError):
    """Bad input on the command line or in a file it names."""


def print_error(message: object) -> None:
    """One line on stderr: scripts read it, people read it, a long path never breaks it."""
    lines = (line.strip() for line in str(message).splitlines())
    sys.stderr.write("error: " + "; ".join(line for line in lines if line) + "\n")
    sys.stderr.flush()


def validation_reasons(error: ValidationError) -> str:
    """Each bad field and why, as `field: reason; other: reason`."""
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or '(whole)'}: {item['msg']}"
        for item in error.errors()
    )


def add_setting_flags(
    parser: argparse.ArgumentParser,
    flags: Mapping[str, Callable[[str], Any]],
    choices: Mapping[str, list[str]] | None = None,
) -> None:
    """`--field-name VALUE` for each field; unset flags stay None so the settings decide."""
    for name, kind in flags.items():
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=kind,
            default=None,
            choices=(choices or {}).get(name),
        )


def flag_overrides(args: argparse.Namespace, flags: Iterable[str]) -> dict[str, Any]:
    """The fields given on the command line, to pass over the environment's values."""
    return {name: getattr(args, name) for name in flags if getattr(args, name, None) is not None}


def settings_from(
    settings_type: type[Settings], args: argparse.Namespace, flags: Iterable[str]
) -> Settings:
    """The service's settings: environment variables, then the flags given; bad values are usage
    errors naming the field."""
    try:
        return settings_type(**flag_overrides(args, flags))
    except ValidationError as error:
        raise UsageError(validation_reasons(error)) from None


def log_to_stderr() -> None:
    """A service's log: time, level, logger and message, a line each."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def stop_signal() -> threading.Event:
    """An event set by SIGINT or SIGTERM: a service runs until it is set, then stops cleanly."""
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    return stopping
