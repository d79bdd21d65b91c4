"""The stack in the foreground, for `up` and `demo`: started, greeted, watched, stopped.

`up` runs until Ctrl-C; `demo` runs the stack with the demo analysis and stops it once the
analysis has ended and every model is back to zero workers.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live

from cli.api_client import LoginRefused
from cli.base import USAGE_STATUS, add_setting_flags, flag_overrides, print_error, stop_signal
from cli.local.backoff import Backoff

# Settings of the stack (StackSettings) that `up` and `demo` take as flags.
FLAGS = {
    "data_dir": Path,
    "api_port": int,
    "scaler_port": int,
    "scaler_metrics_port": int,
    "redis_port": int,
    "total_worker_limit": int,
}
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
    stack.say = lambda text: console.print(text, highlight=False, soft_wrap=True)
    stopping = stop_signal()
    try:
        stack.start()
        _greet(console, stack)
        yield stack, stopping
    finally:
        console.print("stopping the stack ...", highlight=False, soft_wrap=True)
        stack.stop()


@dataclass
class Watch:
    """The calls the live view makes each round, each with its own back-off: finding newly
    registered models (the API's token and model list) and reading the API's metrics. A failed
    call is a note to show and a later retry, never the end of the stack; only a refused login
    (a wrong password, which no retry mends) ends it."""

    discover: Callable[[], object]
    read: Callable[[], dict[str, Any]]
    discovery_seconds: float
    discovery: Backoff = field(default_factory=Backoff)
    metrics: Backoff = field(default_factory=Backoff)
    work: dict[str, Any] = field(default_factory=dict)
    next_discovery: float = 0.0
    # The API's metrics of a thousand models take tens of milliseconds to parse: read them
    # this often, not at every refresh of the view.
    read_seconds: float = 2.0
    next_read: float = 0.0
    # The scaler's answer changed since the work was last read: read it again as soon as the
    # back-off lets, whatever the schedule.
    owed: bool = False

    def tick(self, now: float, *, fresh: bool = False) -> None:
        """Make the calls that are due; `fresh`: the scaler's answer has just changed, so the
        work is read again (now, or once a failing read may be tried again) and a row pairs the
        answer with work read after it, not with work from before it (a chunk shown as waiting
        beside the answer that let its worker go, although it had ended)."""
        self.owed = self.owed or fresh
        if now >= self.next_discovery and self.discovery.due(now):
            try:
                self.discover()
            except LoginRefused:
                raise
            except Exception as error:  # shown, and tried again after the back-off
                self.discovery.failed(error, now)
            else:
                self.discovery.succeeded()
            self.next_discovery = now + self.discovery_seconds
        if self.owed or now >= self.next_read:
            work = self.metrics.attempt(self.read, now)
            if work is not None:
                self.work, self.owed = work, False
            self.next_read = now + self.read_seconds

    def notes(self, now: float) -> list[str]:
        shown = (
            self.discovery.shown("finding models (API)", now),
            self.metrics.shown("reading the API's metrics", now),
        )
        return [note for note in shown if note]


def watch(stack: Any, stopping: threading.Event, console: Console, until: Any, demo: Any) -> int:
    """Show the models until Ctrl-C, a refused login (2) or `until(scaling)` (0)."""
    from cli.local.view import changes, read_work, table

    looking = Watch(
        stack.discover, lambda: read_work(stack.api_url), stack.settings.discovery_seconds
    )
    shown = dict[str, str]()
    said = dict[str, str]()
    answers: dict[str, tuple[float, int]] = {}
    # A terminal gets a live table; a log gets a line per change.
    with (
        Live(console=console, auto_refresh=False) if console.is_terminal else nullcontext() as live
    ):
        if demo is not None:
            demo.start()
        while not stopping.is_set():
            now = time.monotonic()
            scaling = stack.keda.scaling()
            before, answers = answers, {m: (s.metric, s.replicas) for m, s in scaling.items()}
            try:
                looking.tick(now, fresh=answers != before)
            except LoginRefused as error:
                print_error(error)
                return USAGE_STATUS
            notes = stack.notes(now) + looking.notes(now)
            if live is not None:
                live.update(table(scaling, looking.work, notes), refresh=True)
            else:
                say = lambda text: console.print(text, highlight=False, soft_wrap=True)  # noqa: E731
                shown = changes(shown, scaling, looking.work, say)
                said = _say_new(said, notes, say)
            stack.tend(now)
            if until is not None and until(scaling):
                return 0
            stopping.wait(REFRESH_SECONDS)
    return 0


def _say_new(
    before: dict[str, str], notes: list[str], say: Callable[[str], None]
) -> dict[str, str]:
    """Say each note whose subject (the text before its first colon) is new or changed its
    reason; the countdown in a note does not make it new."""
    now: dict[str, str] = {}
    for note in notes:
        subject, _, rest = note.partition(":")
        reason = rest.split(" (failed ")[0]
        now[subject] = reason
        if before.get(subject) != reason:
            say(note)
    return now


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
        idle = all(
            s.replicas == 0 and s.workers.running == 0 and s.workers.stopping == 0
            for s in scaling.values()
        )
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
        f"http://{stack.settings.host}:{stack.ports['scaler_metrics_port']}/metrics",
        f"login   {stack.settings.admin_username} / {stack.password}",
        f"workers at most {stack.budget.workers} together ({stack.budget.reason})",
        f"data    {stack.data_dir}  (logs in {stack.supervisor.log_dir})",
        "Ctrl-C stops everything.",
    ]
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True)
