"""The local stack's children end with `up`, however `up` ends.

`up` stops its children itself on Ctrl-C or SIGTERM. When it is SIGKILLed (the OOM killer, a
supervisor's timeout, `kill -9`) it cannot, and each child runs in a session of its own (so a
Ctrl-C in the terminal reaches only `up`): Redis, the API, the scaler and every worker would run
on and keep their ports. So `up` starts this tether first, the way a worker's pool process starts
its `worker.group_guard`: a small process in a session of its own that waits for `up` to exit
and then SIGKILLs every process of every session `up` started, their descendants included
(Celery's pool processes lead groups of their own but stay in their worker's session).

`up` keeps the sessions it started in a file, one id a line, rewritten whole on each change;
the tether reads it once `up` has gone.

Run as `python -m cli.local.tether <pid> <sessions-file>`: `<pid>` must be the tether's parent.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

POLL_SECONDS: Final = 0.2
PROC: Final = Path("/proc")
READY: Final = b"tethered\n"
# Forks racing the kill get this many more rounds.
ROUNDS: Final = 3


def tether(sessions_file: Path) -> subprocess.Popen[bytes]:
    """Start the tether of this process; returns once it watches."""
    process = subprocess.Popen(
        [sys.executable, "-m", __name__, str(os.getpid()), str(sessions_file)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        cwd="/",
        start_new_session=True,
    )
    assert process.stdout is not None
    with process.stdout:
        ready = process.stdout.readline()
    if ready != READY:
        raise RuntimeError(f"the stack's tether did not start (exit status {process.wait()})")
    return process


def write_sessions(sessions_file: Path, sessions: list[int]) -> None:
    """Record the sessions to end (atomically: the tether may read at any moment)."""
    part = sessions_file.with_suffix(".part")
    part.write_text("".join(f"{sid}\n" for sid in sessions))
    os.replace(part, sessions_file)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[0].isdigit():
        print(f"tether: expected <pid> <sessions-file>, got {argv}", file=sys.stderr)
        return 2
    owner, sessions_file = int(argv[0]), Path(argv[1])
    if os.getppid() != owner:
        print(f"tether: process {owner} is not this tether's parent", file=sys.stderr)
        return 2
    exited = _exit_notice(owner)
    sys.stdout.buffer.write(READY)
    sys.stdout.close()
    if exited is not None:
        select.select([exited], [], [])
    while os.getppid() == owner:
        time.sleep(POLL_SECONDS)  # an orphan is adopted by another process
    for _ in range(ROUNDS):
        if not end_sessions(_read(sessions_file)):
            break
    return 0


def end_sessions(sessions: set[int]) -> int:
    """SIGKILL every live process of `sessions`; return how many were signalled."""
    me = os.getpid()
    killed = 0
    for entry in PROC.glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # "<pid> (<name>) <state> <ppid> <pgrp> <session> ...": the name may hold anything.
        state, _, _, session = stat[stat.rfind(")") + 2 :].split()[:4]
        pid = int(entry.name)
        if int(session) in sessions and state != "Z" and pid != me:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    return killed


def _read(sessions_file: Path) -> set[int]:
    try:
        return {int(line) for line in sessions_file.read_text().split() if line.isdigit()}
    except OSError:
        return set()


def _exit_notice(owner: int) -> int | None:
    try:
        descriptor = os.pidfd_open(owner)
    except (AttributeError, OSError):
        return None
    if os.getppid() != owner:
        os.close(descriptor)
        return None
    return descriptor


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
