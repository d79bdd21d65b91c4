"""The process groups of this process's kernel steps, so that none outlives its step or its owner.

Each step's script leads a process group of its own (`worker.step_shell`) and records its id
in a folder of the step's, under one folder per process (`root`). When the step ends, what is
left of its groups is killed: the script has exited, so anything still in them is an orphan
(the exec monitor's `sleep`, say). When the process's warm kernel dies mid-step, the step's
groups are killed so the step fails at once (`worker.warm_kernel`). When a pool process dies,
its guard kills the groups of every step it had running (`worker.group_guard`).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from worker.step_shell import RECORDS

ENVIRONMENT: Final = RECORDS
# This process's folder and the pid it was made for: a forked child must not share it, or one
# pool process's guard would kill the steps of another.
_root: tuple[int, Path] | None = None


def root() -> Path:
    """This process's folder of step records: made on first use, removed when it exits (by its
    guard when it has one, however it exits)."""
    global _root
    if _root is None or _root[0] != os.getpid() or not _root[1].is_dir():
        folder = Path(tempfile.mkdtemp(prefix="oasis-step-groups-"))
        atexit.register(_remove, os.getpid(), folder)
        _root = (os.getpid(), folder)
    return _root[1]


def _remove(owner: int, folder: Path) -> None:
    if os.getpid() == owner:  # a forked child runs its parent's exit handlers too
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def recorded() -> Iterator[dict[str, str]]:
    """One kernel step: yields the environment its script needs to record its group, and kills
    what is left of the step's groups when the step ends."""
    folder = Path(tempfile.mkdtemp(prefix="step-", dir=root()))
    try:
        yield {ENVIRONMENT: str(folder)}
    finally:
        kill(folder)
        shutil.rmtree(folder, ignore_errors=True)


def kill_all(records: Path | None = None) -> int:
    """SIGKILL the groups of every step recorded under `records` (this process's root by
    default); returns how many groups were signalled."""
    folder = records or (_root[1] if _root is not None and _root[0] == os.getpid() else None)
    if folder is None or not folder.is_dir():
        return 0
    return sum(kill(step) for step in folder.iterdir() if step.is_dir())


def kill(step: Path) -> int:
    """SIGKILL the groups recorded in one step's folder; returns how many were signalled."""
    signalled = 0
    with contextlib.suppress(OSError):
        for record in step.iterdir():
            if not record.name.isdigit():
                continue
            try:
                os.killpg(int(record.name), signal.SIGKILL)
                signalled += 1
            except (ProcessLookupError, PermissionError):
                pass  # the group has ended
    return signalled
