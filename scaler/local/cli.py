"""`oasis-autoscaler up` and `oasis-autoscaler demo`: the whole stack on this machine.

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

from scaler.settings_flags import add_setting_flags, flag_overrides

FLAGS = {"data_dir": Path, "api_port": int, "scaler_port": int, "scaler_metrics_port": int}
DEMO_DEADLINE_SECONDS = 1800.0
REFRESH_SECONDS = 0.5


def add_parser(subparsers: Any) -> None:
    up = subparsers.add_parser(
        "up",
        help="run the whole stack on this machine until Ctrl-C",
        description="Run a private Redis, the API (SQLite in the data dir), the scaler, and a "
        "local stand-in for KEDA that starts and stops real worker processes for every "
        "registered model, until Ctrl-C. Settings come from OASIS_AUTOSCALER_* environment "
        "variables; these flags override them.",
    )
    _common(up)
    up.add_argument("--demo", action="store_true", help="also run the demo analysis")
    up.set_defaults(func=run_up)
    demo = subparsers.add_parser(
        "demo",
        help="run the stack with a demo analysis, and stop when it is done",
        description="Start the stack as `up` does, register the built-in demo model, upload a "
        "portfolio and run an analysis through the platform's own client; watch the workers "
        "rise with the chunks and fall back to zero; then stop everything.",
    )
    _common(demo)
    demo.set_defaults(func=run_demo, demo=True)


def _common(parser: argparse.ArgumentParser) -> None:
    add_setting_flags(parser, FLAGS)
    parser.add_argument(
        "--demo-locations", type=int, default=200, help="locations in the demo portfolio"
    )


def run_up(args: argparse.Namespace, console: Console) -> int:
    with _running_stack(args, console) as (stack, stopping):
        demo = _DemoThread(stack, args.demo_locations, console) if args.demo else None
        return _watch(stack, stopping, console, until=None, demo=demo)


def run_demo(args: argparse.Namespace, console: Console) -> int:
    with _running_stack(args, console) as (stack, stopping):
        demo = _DemoThread(stack, args.demo_locations, console)
        status = _watch(stack, stopping, console, until=demo.finished_and_idle, demo=demo)
        if demo.error:
            console.print(f"[red]demo failed:[/] {demo.error}", highlight=False, soft_wrap=True)
            return 1
        if status == 0:
            console.print(
                f"demo analysis {demo.analysis} ended {demo.status}; the outputs are in "
                f"{stack.data_dir / 'analyses' / str(demo.analysis)} and at "
                f"{stack.api_url}/v2/analyses/{demo.analysis}/output_file/",
                highlight=False,
                soft_wrap=True,
            )
        return status if demo.status == "RUN_COMPLETED" else 1


@contextmanager
def _running_stack(args: argparse.Namespace, console: Console) -> Iterator[tuple[Any, Any]]:
    from scaler.local.settings import StackSettings
    from scaler.local.stack import LocalStack

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


def _watch(stack: Any, stopping: threading.Event, console: Console, until: Any, demo: Any) -> int:
    """Show the models until Ctrl-C, a child's exit (1) or `until(scaling)` (0)."""
    from scaler.local.view import changes, read_work, table

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
                except PermissionError as error:
                    console.print(f"[red]error:[/] {error}", highlight=False, soft_wrap=True)
                    return 2
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


class _DemoThread:
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

        from scaler.local.demo import start_demo, wait_for_demo

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
