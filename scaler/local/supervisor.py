"""Child processes of the local stack: each in its own session, all stopped together, none left.

Each child leads its own process group, so stopping it reaches everything it started (Celery's
pool, the kernel's pipelines) and a Ctrl-C in the terminal reaches only the supervisor, which then
stops the children in order: SIGTERM (workers finish their chunk), then SIGKILL after a grace.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def running(self) -> bool:
        return self.process.poll() is None


@dataclass
class Supervisor:
    log_dir: Path
    children: list[Child] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                argv,
                env={**os.environ, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        child = Child(name, process, log)
        self.children.append(child)
        return child

    def stop(self, child: Child, grace: float) -> None:
        """SIGTERM to the child's whole group, SIGKILL after `grace` seconds."""
        _signal_group(child.process, signal.SIGTERM)
        try:
            child.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(child.process, signal.SIGKILL)
            child.process.wait()
        # Whatever the child left in its group (a kernel pipeline) goes too.
        _signal_group(child.process, signal.SIGKILL)
        self.children.remove(child)

    def stop_all(self, grace: float) -> None:
        """Stop the children, newest first (workers before the API before Redis)."""
        for child in reversed(list(self.children)):
            self.stop(child, grace)

    def exited(self) -> list[Child]:
        return [child for child in self.children if not child.running]


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def wait_until(check: Callable[[], bool], deadline: float, what: str) -> None:
    """Poll `check()` until true; TimeoutError naming `what` after `deadline` seconds."""
    stop = time.monotonic() + deadline
    while time.monotonic() < stop:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)  # polling with a deadline
    raise TimeoutError(f"{what} did not come up within {deadline:.0f} s")
