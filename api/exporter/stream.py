"""The platform's queue-status websocket, read for as long as the exporter runs.

Each message is a full snapshot. The loop connects with the bearer token in an `AUTHORIZATION`
header (as the platform's websocket expects), hands every whole message to the state, and
counts and logs any other (garbage, a partial snapshot) without closing. A refused handshake,
a dropped connection or a platform that is down: reconnect after a back-off that doubles up
to its limit, and starts again from the first delay once a connection delivered a good message.
A refused token is forgotten, so the next attempt logs in again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.sync.client import ClientConnection, connect

from api.exporter.platform import REFUSED, PlatformClient, PlatformError
from api.exporter.snapshot import SnapshotError, parse
from api.exporter.state import Channel, ExporterState

log = logging.getLogger(__name__)
# How long a read waits before looking at the stop event again.
POLL_SECONDS = 0.5


class Backoff:
    """Delays that double from `initial` up to `limit`; `reset` after a success."""

    def __init__(self, initial: float, limit: float) -> None:
        self._initial = initial
        self._limit = limit
        self._next = initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self._limit)
        return delay

    def reset(self) -> None:
        self._next = self._initial


class QueueStatusStream:
    def __init__(
        self,
        url: str,
        client: PlatformClient,
        state: ExporterState,
        backoff: Backoff,
        *,
        open_timeout: float,
        on_snapshot: Callable[[Iterable[str]], None] = lambda queues: None,
    ) -> None:
        self._url = url
        self._client = client
        self._state = state
        self._backoff = backoff
        self._open_timeout = open_timeout
        # Called with the queues of every snapshot kept (to notice a model created since).
        self._on_snapshot = on_snapshot

    def run(self, stop: threading.Event) -> None:
        """Read until `stop` is set; never raises."""
        while not stop.is_set():
            try:
                self._connect_and_read(stop)
            except Exception as error:  # whatever happened, the loop goes on after a back-off
                self._failed(error)
            finally:
                self._state.set_websocket(connected=False)
            if not stop.is_set():
                stop.wait(self._backoff.next())

    def _connect_and_read(self, stop: threading.Event) -> None:
        token = self._client.token()
        headers = {"AUTHORIZATION": f"Bearer {token}"} if token else None
        with connect(
            self._url,
            additional_headers=headers,
            open_timeout=self._open_timeout,
            close_timeout=1,
            max_size=64 * 2**20,
        ) as websocket:
            self._state.set_websocket(connected=True)
            log.info("websocket open: %s", self._url)
            self._read(websocket, stop)

    def _read(self, websocket: ClientConnection, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                raw = websocket.recv(timeout=POLL_SECONDS)
            except TimeoutError:
                continue
            try:
                snapshot = parse(raw)
            except SnapshotError as error:
                self._state.refuse(Channel.WEBSOCKET)
                log.warning("websocket message refused, the last good snapshot kept: %s", error)
                continue
            self._state.offer(snapshot, Channel.WEBSOCKET)
            self._backoff.reset()
            self._on_snapshot(snapshot.queues)

    def _failed(self, error: Exception) -> None:
        if isinstance(error, InvalidStatus) and error.response.status_code in REFUSED:
            self._client.forget_token()
            log.warning("websocket %s refused the token; logging in again", self._url)
        elif isinstance(error, ConnectionClosed):
            log.warning("websocket %s closed: %s; reconnecting", self._url, error)
        elif isinstance(error, (PlatformError, WebSocketException, OSError)):
            log.warning("websocket %s: %s; reconnecting", self._url, error)
        else:
            log.exception("websocket %s failed; reconnecting", self._url)
