"""A pool process's work dies with it: a guard kills what it started once it exits.

Each pool process leads a process group of its own, and what it starts for a sub-task is in
that group (the lookup's processes) or in the group of a kernel step's script, which leads one
of its own and records it (`worker.step_groups`). When the pool process goes (SIGTERM from a
revoke with terminate, SIGKILL, or the SIGKILL Celery has the kernel send it when the worker's
main process dies), they would run on as orphans, still writing into the analysis's folders. So
`lead_own_group` also starts a guard: this module run as a small process in a session of its own
(out of reach of signals sent to the worker's groups), which waits for its pool process to exit,
however it exits, and then SIGKILLs the group it led and every step group it recorded.

A guard outside the pool process rather than a child session per kernel step: oasislmf starts
its script itself; forking a pool process that has loaded numba and started threads is unsafe;
and a fresh interpreter per step would spend seconds on imports.

Run as `python -m worker.group_guard <pid> <step-records>`: `<pid>` must be the guard's parent
and lead its own process group; anything else is refused (exit status 2) and nothing is killed.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

from worker import step_groups

# How often the guard looks at its parent where the system cannot notify it (no pidfd).
POLL_SECONDS: Final = 0.2
PROC: Final = Path("/proc")
# The guard's one line to its owner: it watches.
READY: Final = b"watching\n"

_guard: subprocess.Popen[bytes] | None = None


def lead_own_group() -> subprocess.Popen[bytes]:
    """Make this process lead its own process group and start its guard; returns the guard.

    The group holds no other pool process, so the guard kills only this one's work: what is
    left in the group, and the groups of its kernel steps, when this process exits. Returns once
    the guard watches, so nothing this process starts can escape it.
    """
    global _guard
    os.setpgrp()
    guard = subprocess.Popen(
        [sys.executable, "-m", __name__, str(os.getpid()), str(step_groups.root())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        cwd="/",  # holds no folder of the work
        start_new_session=True,
    )
    assert guard.stdout is not None
    with guard.stdout:
        ready = guard.stdout.readline()
    if ready != READY:
        raise RuntimeError(
            f"the process group guard did not start (exit status {guard.wait()}); its reason"
            " is in the log"
        )
    # Kept, so the guard is not reported as a still-running child when its handle is dropped.
    _guard = guard
    return guard


def main(argv: list[str]) -> int:
    owner = _owner(argv)
    if isinstance(owner, str):
        print(f"group_guard: {owner}; nothing done", file=sys.stderr)
        return 2
    records = Path(argv[1])
    exited = _exit_notice(owner)
    sys.stdout.buffer.write(READY)
    sys.stdout.close()  # the owner reads one line, then closes its end
    _wait_for_exit(owner, exited)
    steps = step_groups.kill_all(records)
    shutil.rmtree(records, ignore_errors=True)
    if steps:
        print(
            f"group_guard: process {owner} exited; killed {steps} kernel step groups it left",
            file=sys.stderr,
        )
    left = _running_in(owner)
    try:
        os.killpg(owner, signal.SIGKILL)
    except ProcessLookupError:
        return 0  # the group is empty
    if left:
        print(
            f"group_guard: process {owner} exited; killed the {len(left)} processes it left"
            f" running: {', '.join(left)}",
            file=sys.stderr,
        )
    return 0


def _owner(argv: list[str]) -> int | str:
    """The pid to guard, or why it is refused."""
    if len(argv) != 2 or not argv[0].isdigit():
        return (
            "expected two arguments, the pid of the process to guard and its folder of step"
            f" records, got {argv}"
        )
    owner = int(argv[0])
    if os.getppid() != owner:
        return f"process {owner} is not this guard's parent"
    try:
        group = os.getpgid(owner)
    except ProcessLookupError:
        return f"process {owner} has exited"
    if group != owner:
        return f"process {owner} does not lead its process group (it is in group {group})"
    return owner


def _exit_notice(owner: int) -> int | None:
    """A descriptor that becomes readable when `owner` (this process's parent) exits; None
    where the system has none (no pidfd before Linux 5.3)."""
    try:
        descriptor = os.pidfd_open(owner)
    except (AttributeError, OSError):
        return None  # no pidfd here, or the owner has exited already
    if os.getppid() != owner:
        # The owner exited before the pidfd was open: its pid may name another process now.
        os.close(descriptor)
        return None
    return descriptor


def _wait_for_exit(owner: int, exited: int | None) -> None:
    """Return once `owner`, this process's parent, has exited."""
    if exited is not None:
        select.select([exited], [], [])
        os.close(exited)
    while os.getppid() == owner:
        time.sleep(POLL_SECONDS)  # an orphan is adopted by another process


def _running_in(group: int) -> list[str]:
    """`<pid> <name>` of the processes of `group` that have not exited; the exited owner stays a
    member (a zombie) until its parent reaps it. Empty where there is no /proc to read."""
    found = []
    for entry in PROC.glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # "<pid> (<name>) <state> <ppid> <group> ...": the name may hold spaces and brackets.
        name, fields = stat[stat.find("(") + 1 : stat.rfind(")")], stat[stat.rfind(")") + 2 :]
        state, _, pgid = fields.split()[:3]
        if int(pgid) == group and state != "Z":
            found.append(f"{entry.name} {name}")
    return found


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
