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

It runs as `python -I -S` (no site packages) and imports only modules built into the
interpreter (and `signal` when a tool was killed): five start for every chunk, and `json`,
`socket` and `signal` (through `re` and `enum`) would more than double what each costs
(measured: 24 ms of CPU per tool run against 11).

The messages (`worker.zygote` reads and writes them), each a 4-byte big-endian length, then:
- request: NUL-separated bytes, as the system hands them to a process (none can hold a NUL):
  the argument count, the arguments, the working folder, then `NAME=value` per variable;
- reply: `exit <status>`, `signal <number>` or `error <message>` (UTF-8).
"""

import _socket
import os
import struct
import sys

HEADER = struct.Struct("!I")
SOCKET_NAME = "zygote.sock"
# Exit status when the warm process cannot run the tool (as a shell's "cannot execute").
CANNOT_RUN = 126
FDS = struct.pack("3i", 0, 1, 2)


def request(tool: str) -> bytes:
    """This process's run of `tool`, as the warm process reads it."""
    argv = [os.fsencode(tool), *map(os.fsencode, sys.argv[1:])]
    environment = [name + b"=" + value for name, value in os.environb.items()]
    body = b"\0".join([str(len(argv)).encode(), *argv, os.fsencode(os.getcwd()), *environment])
    return HEADER.pack(len(body)) + body


def main() -> int:
    tool = os.path.basename(sys.argv[0])
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(os.path.dirname(here), SOCKET_NAME)
    connection = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        connection.connect(path)
        message = request(tool)
        sent = connection.sendmsg([message], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, FDS)])
        if sent < len(message):
            connection.sendall(message[sent:])
    except OSError as exc:
        print(f"{tool}: the warm kernel process at {path} is not there: {exc}", file=sys.stderr)
        return CANNOT_RUN
    # The tool has its own copies now: ours must not keep a pipe open after the tool is done
    # with it (a reader would wait for an end of file that never came).
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    kind, _, value = (_outcome(connection) or b"").partition(b" ")
    if kind == b"exit":
        return int(value)
    if kind == b"signal":
        import signal  # here: only a tool killed by a signal pays for it

        number = int(value)
        signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)
        return 128 + number
    if kind == b"error":
        print(f"{tool}: {value.decode(errors='replace')}", file=sys.stderr)
    else:
        print(f"{tool}: the warm kernel process ended while it ran {tool}", file=sys.stderr)
    return CANNOT_RUN


def _outcome(connection: "_socket.socket") -> "bytes | None":
    data = b""
    while len(data) < HEADER.size or len(data) < HEADER.size + HEADER.unpack_from(data)[0]:
        try:
            more = connection.recv(65536)
        except OSError:
            return None
        if not more:
            return None
        data += more
    return data[HEADER.size :]


if __name__ == "__main__":
    sys.exit(main())
