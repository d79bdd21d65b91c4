"""The warm kernel of one worker process: its warm process (`worker.zygote`), started, watched and
started again.

Each pool process owns one warm process, started when the pool process starts (it warms while
the pool process waits for its first task) and in a session of its own, out of reach of
signals sent to the worker's groups. It dies with its owner
(PDEATHSIG). Before every kernel step the owner checks it is alive and starts a new one if not;
a step that was running when it died fails (each stand-in reports it on stderr) and is tried
again by the sub-task's retries, on the new one.
"""

from __future__ import annotations

import atexit
import logging
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Final

from worker import step_groups
from worker.kernel_tools import write_tools_dir
from worker.stand_in import SOCKET_NAME
from worker.zygote import READY, THREAD_ENVIRONMENT

log = logging.getLogger(__name__)
BIN: Final = "bin"
# Warming loads the compiled code from numba's cache; it never compiles, so this is generous.
READY_SECONDS: Final = 300.0
# How often a kernel step looks at its warm process.
WATCH_SECONDS: Final = 0.2


class WarmKernelError(RuntimeError):
    """The warm process did not start; the message says why."""


class WarmKernel:
    """One warm process and its tools folder under a private temporary folder."""

    def __init__(self, numba_cache_dir: Path) -> None:
        self.numba_cache_dir = numba_cache_dir
        # Unix socket paths are short (108 bytes): a folder of its own in the temporary folder.
        self.root = Path(tempfile.mkdtemp(prefix="oasis-warm-kernel-"))
        self.tools_dir = write_tools_dir(self.root / BIN, stand_ins=True)
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        # The pool process's warm-up (worker/warm_gate.py) and its first step may both wait.
        self._lock = threading.Lock()

    @property
    def socket(self) -> Path:
        return self.root / SOCKET_NAME

    def start(self) -> None:
        """Start the warm process; returns at once (`ready` waits for it)."""
        self.socket.unlink(missing_ok=True)
        self.numba_cache_dir.mkdir(parents=True, exist_ok=True)
        environment = {
            **os.environ,
            **THREAD_ENVIRONMENT,
            "NUMBA_CACHE_DIR": str(self.numba_cache_dir),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "worker.zygote", "--socket", str(self.socket)]
            + ["--owner", str(os.getpid())],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            env=environment,
            cwd="/",  # holds no folder of the work
            start_new_session=True,
        )
        self.starts += 1

    def ready(self) -> Path:
        """The tools folder, once a warm process accepts runs: the running one, or a new one if
        it has died (said in the log)."""
        with self._lock:
            return self._ready()

    def _ready(self) -> Path:
        process = self.process
        if process is None:
            self.start()
        elif process.poll() is not None:
            log.warning(
                "the warm kernel process %s exited (status %s): starting a new one",
                process.pid,
                process.returncode,
            )
            self._close()
            self.start()
        assert self.process is not None
        if self.process.stdout is not None:
            self._wait_ready(self.process)
        return self.tools_dir

    @contextmanager
    def running(self) -> Iterator[Path]:
        """The tools folder for one kernel step, watched: if the warm process dies during the
        step, the step's script is killed (the process groups of this process's steps), so the
        step fails at once and is retried. A script whose tools all died at once could otherwise
        wait for ever: its readers of named pipes wait for writers that never start."""
        tools = self.ready()
        process = self.process
        assert process is not None
        done = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(process, done), daemon=True)
        watcher.start()
        try:
            yield tools
        finally:
            done.set()
            watcher.join()

    def _watch(self, process: subprocess.Popen[bytes], done: threading.Event) -> None:
        while not done.wait(WATCH_SECONDS):
            if process.poll() is not None:
                log.warning(
                    "the warm kernel process %s exited (status %s) during a kernel step: "
                    "stopping the step's script",
                    process.pid,
                    process.returncode,
                )
                step_groups.kill_all()
                return

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        deadline = time.monotonic() + READY_SECONDS
        remaining = READY_SECONDS
        while remaining > 0:
            readable, _, _ = select.select([process.stdout], [], [], remaining)
            if readable:
                line = process.stdout.readline()
                process.stdout.close()
                process.stdout = None  # ready: nothing more is written there
                if line == READY:
                    return
                break
            remaining = deadline - time.monotonic()
        process.kill()
        process.wait()
        raise WarmKernelError(
            f"the warm kernel process did not start (exit status {process.returncode}); "
            "its reason is in the worker's log"
        )

    def _close(self) -> None:
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()

    def stop(self) -> None:
        """Stop the warm process (its children die with it) and remove its folder."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._close()
        shutil.rmtree(self.root, ignore_errors=True)


_warm: WarmKernel | None = None


def start(numba_cache_dir: Path) -> WarmKernel:
    """Start this process's warm kernel (once); the pool process calls it when it starts."""
    global _warm
    if _warm is None:
        _warm = WarmKernel(numba_cache_dir)
        # On a normal exit its folder goes too (a killed process leaves a few small files).
        atexit.register(_warm.stop)
        _warm.start()
    return _warm


def running(numba_cache_dir: Path) -> AbstractContextManager[Path]:
    """The tools folder of this process's warm kernel for one kernel step (`WarmKernel.running`),
    started (again) if needed."""
    return start(numba_cache_dir).running()
