"""Which live processes of this machine use a folder, read from /proc (Linux).

A process uses a folder when its command line names it or anything in it, when it runs in it,
or when it holds a file of it open. Processes this test run may not inspect (other users'),
and processes that end while being read, are passed over.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.support.polling import poll

PROC = Path("/proc")
# Fields of /proc/<pid>/stat after the command in parentheses: state, parent, group, session.
PARENT, SESSION = 1, 3


def processes_using(folder: Path) -> list[str]:
    """`<pid> <command line>` of every live process but this one that uses `folder`."""
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = _command_line(entry)
            if command and _uses(entry, command, str(folder)):
                found.append(f"{entry.name} {' '.join(command)}")
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return found


def wait_for_command_naming(folder: Path, deadline: float = 60.0) -> list[str]:
    """Poll until some process's command line names `folder` (a kernel script running in it);
    its `<pid> <command line>` and those of the others found with it."""
    stop = time.monotonic() + deadline
    while not (found := _naming(folder)):
        if time.monotonic() > stop:
            raise TimeoutError(f"no process named {folder} in its command line within {deadline} s")
        time.sleep(0.1)  # polling with a deadline
    return found


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, exited but not yet reaped, does not)."""
    fields = _stat_fields(PROC / str(pid))
    return fields is not None and fields[0] != "Z"


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (zombies included)."""
    return _with_stat(PARENT, pid)


def in_session(session: int) -> list[int]:
    """The processes of session `session` (zombies included)."""
    return _with_stat(SESSION, session)


def _with_stat(field: int, value: int) -> list[int]:
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(entry)
            if fields is not None and int(fields[field]) == value:
                found.append(int(entry.name))
    return found


def _stat_fields(process: Path) -> list[str] | None:
    """The fields of `process`'s /proc stat after its command (which may hold spaces and
    parentheses): state first. None when it has gone."""
    try:
        stat = (process / "stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split()


def wait_until_gone(pid: int, deadline: float = 30.0) -> None:
    """Poll until process `pid` no longer runs; fail at the deadline."""
    poll(lambda: not alive(pid), f"process {pid} to end", deadline)


def wait_until_unused(folder: Path, deadline: float = 30.0) -> None:
    """Poll until no process uses `folder`; fail naming the ones still there at the deadline."""
    stop = time.monotonic() + deadline
    while users := processes_using(folder):
        if time.monotonic() > stop:
            raise AssertionError(
                f"{len(users)} processes still use {folder} after {deadline} s:\n"
                + "\n".join(users)
            )
        time.sleep(0.2)  # polling with a deadline


def _naming(folder: Path) -> list[str]:
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                command = _command_line(entry)
            except OSError:
                continue
            if any(_within(argument, str(folder)) for argument in command):
                found.append(f"{entry.name} {' '.join(command)}")
    return found


def _command_line(entry: Path) -> list[str]:
    """The arguments; empty for a zombie or a kernel thread, which use nothing."""
    arguments = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
    return [argument for argument in arguments if argument]


def _uses(entry: Path, command: list[str], folder: str) -> bool:
    if any(_within(argument, folder) for argument in command):
        return True
    if _within(os.readlink(entry / "cwd"), folder):
        return True
    for descriptor in (entry / "fd").iterdir():
        try:
            if _within(os.readlink(descriptor), folder):
                return True
        except OSError:
            continue  # closed meanwhile
    return False


def _within(text: str, folder: str) -> bool:
    """`text` is the folder, or a path in it, or an argument that mentions one (`x=<path>`)."""
    index = text.find(folder)
    if index < 0:
        return False
    rest = text[index + len(folder) :]
    return rest == "" or rest.startswith("/")
