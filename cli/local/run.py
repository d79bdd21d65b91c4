"""The stack in the foreground, for `up` and `demo`: started, greeted, watched, stopped.

`up` runs until Ctrl-C; `demo` runs the stack with the demo analysis and stops it once the
analysis has ended and every model is back to zero workers.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live

from cli.base import USAGE_STATUS, CommandError, add_setting_flags, flag_overrides, print_error

# Settings of the stack (StackSettings) that `up` and `demo` take as flags.
FLAGS = {"data_dir": Path, "api_port": int, "scaler_port": int, "scaler_metrics_port": int}
DEMO_DEADLINE_SECONDS = 1800.0
REFRESH_SECONDS = 0.5


def add_stack_flags(parser: argparse.ArgumentParser) -> None:
    """The flags `up` and `demo` share."""
    add_setting_flags(parser, FLAGS)
    parser.add_argument(
        "--demo-locations", type=int, default=200, help="locations in the demo portfolio"
    )


@contextmanager
def running_stack(args: argparse.Namespace, console: Console) -> Iterator[tuple[Any, Any]]:
    from cli.local.settings import StackSettings
    from cli.local.stack import LocalStack

    stack = LocalStack(StackSettings(**flag_overrides(args, FLAGS)))
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    try:
        stack.start()
        _greet(console, stack)
        yield stack, stopping
    finally:
        console.print("stopping the stack ...", highlight=False, soft_wrap=True)
        stack.stop()


def watch(stack: Any, stopping: threading.Event, console: Console, until: Any, demo: Any) -> int:
    """Show the models until Ctrl-C, a child's exit (1) or `until(scaling)` (0)."""
    from cli.local.view import changes, read_work, table

    next_discovery, shown = 0.0, dict[str, str]()
    # A terminal gets a live table; a log gets a line per change.
    with (
        Live(console=console, auto_refresh=False) if console.is_terminal else nullcontext() as live
    ):
        if demo is not None:
            demo.start()
        while not stopping.is_set():
            if time.monotonic() >= next_discovery:
                try:
                    stack.discover()
                except CommandError as error:
                    print_error(error)
                    return USAGE_STATUS
                next_discovery = time.monotonic() + stack.settings.discovery_seconds
            scaling, work = stack.keda.scaling(), read_work(stack.api_url)
            if live is not None:
                live.update(table(scaling, work), refresh=True)
            else:
                shown = changes(
                    shown,
                    scaling,
                    work,
                    lambda line: console.print(line, highlight=False, soft_wrap=True),
                )
            for child in stack.supervisor.exited():
                console.print(
                    f"[red]{child.name} exited[/] (log: {child.log})",
                    highlight=False,
                    soft_wrap=True,
                )
                return 1
            if until is not None and until(scaling):
                return 0
            stopping.wait(REFRESH_SECONDS)
    return 0


class DemoThread:
    """Runs the demo through the real client beside the live view."""

    def __init__(self, stack: Any, locations: int, console: Console) -> None:
        self.stack, self.locations, self.console = stack, locations, console
        self.analysis: int | None = None
        self.status = ""
        self.error = ""
        self.done = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, name="demo", daemon=True).start()

    def finished_and_idle(self, scaling: dict[str, Any]) -> bool:
        """The analysis ended and the stand-in has stopped every worker again."""
        if self.error:
            return True
        idle = all(s.replicas == 0 and s.running == 0 and s.stopping == 0 for s in scaling.values())
        return self.done.is_set() and idle

    def _run(self) -> None:
        from oasislmf.platform_api.client import APIClient  # type: ignore[import-untyped]

        from cli.local.demo import start_demo, wait_for_demo

        try:
            client = APIClient(
                api_url=self.stack.api_url,
                username=self.stack.settings.admin_username,
                password=self.stack.password,
            )
            self.analysis = start_demo(client, self.locations)
            self._say(f"demo analysis {self.analysis} queued: input generation, then losses")
            ended = wait_for_demo(client, self.analysis, DEMO_DEADLINE_SECONDS, self._status)
            self.status = ended.status
        except Exception as error:  # shown to the user; the stack stops cleanly
            self.error = f"{type(error).__name__}: {error}"
        finally:
            self.done.set()

    def _status(self, status: str) -> None:
        self.status = status
        self._say(f"demo analysis {self.analysis}: {status}")

    def _say(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=True)


def _greet(console: Console, stack: Any) -> None:
    lines = [
        f"API     {stack.api_url}/  (OpenAPI: {stack.api_url}/openapi.json)",
        f"scaler  {stack.scaler_address} (KEDA external scaler, gRPC); its metrics on "
        f"http://{stack.settings.host}:{stack.settings.scaler_metrics_port}/metrics",
        f"login   {stack.settings.admin_username} / {stack.password}",
        f"data    {stack.data_dir}  (logs in {stack.supervisor.log_dir})",
        "Ctrl-C stops everything.",
    ]
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True)
