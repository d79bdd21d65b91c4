"""Where the kernel's progress ping goes when no platform websocket exists: a sink that drops it.

oasislmf pings its progress from the process running a loss step (`generate_losses_partial`
sends the event total once per chunk). With no analysis id it always tries a plain socket at
`OASIS_SOCKET_SERVER_IP`:`OASIS_SOCKET_SERVER_PORT` (127.0.0.1:8888 by default), and with nothing
listening there it logs `ERROR oasis_ping_socket could not connect` on every chunk, an error that
is not one; with something else listening there it sends that something JSON. oasislmf has no
setting that turns the ping off, so a step points those two variables at this sink: a loopback
listener of the step's own.

The ping connects, sends and closes; it never waits for an answer. The system completes a
connection to a listening socket and takes its bytes before anyone accepts it, so the sink
accepts nothing: closing it drops what the pings sent. No thread, and nothing to wait for when
the step ends (a thread polling for its end cost each step 0.1 s on average).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

# Connections the system completes for the sink; a step pings once or twice.
BACKLOG: Final = 128


@contextmanager
def progress_sink() -> Iterator[dict[str, str]]:
    """Listen on a free loopback port while the block runs; yields the environment that points
    oasislmf's socket ping at it."""
    with socket.create_server(("127.0.0.1", 0), backlog=BACKLOG) as listener:
        host, port = listener.getsockname()[:2]
        yield {"OASIS_SOCKET_SERVER_IP": str(host), "OASIS_SOCKET_SERVER_PORT": str(port)}
