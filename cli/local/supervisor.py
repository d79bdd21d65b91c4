"""Child processes of the local stack: each in its own session, all stopped together, none left.

Each child leads its own process group, so stopping it reaches everything it started (Celery's
pool, the kernel's pipelines) and a Ctrl-C in the terminal reaches only the supervisor, which then
stops the children in order: SIGTERM (workers finish their chunk), then SIGKILL after a grace.
The sessions of the children that run are kept in `sessions_file` for the stack's tether
(`cli.local.tether`), which ends them if the supervisor's process is killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cli.local.tether import write_sessions


@dataclass(eq=False)  # one object per process: compared by identity, quickly
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    # When it was asked to stop (monotonic seconds); None while it runs on.
    stopping_since: float | None = None

    @property
    def running(self) -> bool:
        return self.process.poll() is None


@dataclass
class Supervisor:
    log_dir: Path
    children: list[Child] = field(default_factory=list)
    sessions_file: Path | None = None
    # The stand-in's thread starts and reaps workers while the main thread tends the services.
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Child:
        with self._lock:
            return self._start(name, argv, env)

    def _start(self, name: str, argv: list[str], env: dict[str, str] | None) -> Child:
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
        self._record_sessions()
        return child

    def forget(self, child: Child) -> None:
        """Drop a child that exited on its own, killing what it left in its group."""
        _signal_group(child.process, signal.SIGKILL)
        child.process.wait()
        with self._lock:
            if child in self.children:
                self.children.remove(child)
            self._record_sessions()

    def _record_sessions(self) -> None:
        if self.sessions_file is not None:
            # Each child leads its own session, so its pid names it.
            write_sessions(self.sessions_file, [c.process.pid for c in self.children])

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
        with self._lock:
            if child in self.children:
                self.children.remove(child)
            self._record_sessions()

    def terminate(self, child: Child) -> None:
        """Ask the child to stop (SIGTERM to its group) and return at once; `reap` finishes."""
        if child.stopping_since is None:
            child.stopping_since = time.monotonic()
            _signal_group(child.process, signal.SIGTERM)

    def reap(self, grace: float) -> list[Child]:
        """Forget the stopping children that exited (killing what they left in their group),
        SIGKILL those that outlived `grace`; return the ones forgotten."""
        with self._lock:
            return self._reap(grace)

    def _reap(self, grace: float) -> list[Child]:
        gone = []
        for child in list(self.children):
            if child.stopping_since is None:
                continue
            if child.running and time.monotonic() - child.stopping_since > grace:
                _signal_group(child.process, signal.SIGKILL)
                child.process.wait()
            if not child.running:
                _signal_group(child.process, signal.SIGKILL)
                self.children.remove(child)
                gone.append(child)
        if gone:
            self._record_sessions()
        return gone

    def stop_together(self, children: list[Child], grace: float) -> None:
        """Stop `children` at once: SIGTERM to all, then wait up to `grace` for the slowest."""
        for child in children:
            self.terminate(child)
        deadline = time.monotonic() + grace
        while any(c in self.children for c in children):
            self.reap(grace)
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)  # polling with a deadline
        self.reap(0)

    def stop_all(self, grace: float) -> None:
        """Stop the children, newest first (workers before the API before Redis)."""
        for child in reversed(list(self.children)):
            self.stop(child, grace)

    def exited(self) -> list[Child]:
        """Children that exited without being asked to."""
        with self._lock:
            return [c for c in self.children if not c.running and c.stopping_since is None]


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
