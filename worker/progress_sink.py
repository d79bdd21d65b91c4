"""Where the kernel's progress ping goes when no platform websocket exists: a sink that drops it.

oasislmf pings its progress from the process running a loss step (`generate_losses_partial`
sends the event total once per chunk). With no analysis id it always tries a plain socket at
`OASIS_SOCKET_SERVER_IP`:`OASIS_SOCKET_SERVER_PORT` (127.0.0.1:8888 by default), and with nothing
listening there it logs `ERROR oasis_ping_socket could not connect` on every chunk, an error that
is not one; with something else listening there it sends that something JSON. oasislmf has no
setting that turns the ping off, so a step points those two variables at this sink: a loopback
listener of the step's own that takes each connection and closes it.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

# How long the accepting thread waits before it looks whether the sink was closed.
POLL_SECONDS: Final = 0.2


@contextmanager
def progress_sink() -> Iterator[dict[str, str]]:
    """Listen on a free loopback port while the block runs; yields the environment that points
    oasislmf's socket ping at it."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(POLL_SECONDS)
    closed = threading.Event()
    thread = threading.Thread(
        target=_drop_all, args=(listener, closed), name="progress-sink", daemon=True
    )
    thread.start()
    host, port = listener.getsockname()[:2]
    try:
        yield {"OASIS_SOCKET_SERVER_IP": str(host), "OASIS_SOCKET_SERVER_PORT": str(port)}
    finally:
        closed.set()
        thread.join()
        listener.close()


def _drop_all(listener: socket.socket, closed: threading.Event) -> None:
    while not closed.is_set():
        try:
            connection, _ = listener.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        connection.close()
