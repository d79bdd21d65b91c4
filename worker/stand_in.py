"""A kernel tool's stand-in: hands its run to the warm kernel process and waits for its end.

Installed (by `worker.kernel_tools`) as an executable named like each tool (evepy, gulmc, ...)
in a folder the kernel's script finds first on PATH, beside the warm process's socket
(`../zygote.sock`). It sends its argv, working folder, environment and its stdin, stdout and
stderr (the descriptors themselves) to the warm process, which forks a child to run the tool,
then exits as the tool did: with its exit status, or killed by the signal that killed it. So
the script sees what it sees of a tool started cold, and the tool reads and writes the very
pipes and files the script gave it.

The stand-in holds the tool's lifetime: the warm process kills the tool if the stand-in's
connection closes first, so killing the script's process group (a revoke, a killed worker, a
failed run's cleanup) ends the tools it started too.

It runs as `python -I -S` (no site packages): standard library only, so it starts in
milliseconds.
"""

import json
import os
import signal
import socket
import struct
import sys
from typing import Any

HEADER = struct.Struct("!I")
SOCKET_NAME = "zygote.sock"
# Exit status when the warm process cannot run the tool (as a shell's "cannot execute").
CANNOT_RUN = 126


def main() -> int:
    tool = os.path.basename(sys.argv[0])
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(os.path.dirname(here), SOCKET_NAME)
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(path)
        body = json.dumps(
            {"argv": [tool, *sys.argv[1:]], "cwd": os.getcwd(), "env": dict(os.environ)}
        ).encode()
        socket.send_fds(connection, [HEADER.pack(len(body)) + body], [0, 1, 2])
    except OSError as exc:
        print(f"{tool}: the warm kernel process at {path} is not there: {exc}", file=sys.stderr)
        return CANNOT_RUN
    # The tool has its own copies now: ours must not keep a pipe open after the tool is done
    # with it (a reader would wait for an end of file that never came).
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    outcome = _outcome(connection)
    if outcome is None:
        print(f"{tool}: the warm kernel process ended while it ran {tool}", file=sys.stderr)
        return CANNOT_RUN
    if "error" in outcome:
        print(f"{tool}: {outcome['error']}", file=sys.stderr)
        return CANNOT_RUN
    if "signal" in outcome:
        number = int(outcome["signal"])
        signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)
        return 128 + number
    return int(outcome["exit"])


def _outcome(connection: socket.socket) -> "dict[str, Any] | None":
    data = b""
    while len(data) < HEADER.size or len(data) < HEADER.size + HEADER.unpack_from(data)[0]:
        try:
            more = connection.recv(65536)
        except OSError:
            return None
        if not more:
            return None
        data += more
    outcome: dict[str, Any] = json.loads(data[HEADER.size :])
    return outcome


if __name__ == "__main__":
    sys.exit(main())
