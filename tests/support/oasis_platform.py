"""A stand-in for a running OasisPlatform 2.x, as the exporter sees it, for tests.

It follows the platform's documented behaviour (and what a running 2.5.6 was seen to do):
REST under a path prefix (`/api`): `POST /access_token/` (username and password ->
`access_token`, `expires_in`), `GET /v2/models/`, `GET /v2/models/{id}/scaling_configuration/`,
`GET /v2/queue-status/`, each refusing a missing or unknown bearer token with 403; and the
websocket `/ws/v2/queue-status/` (the `websockets` library's own sync server), refusing the
handshake with 403 without a known token in its `AUTHORIZATION` header, sending the current
snapshot on connect and then whatever the test pushes.

The test drives it: `set_snapshot` (what REST answers and a new connection gets), `push` (to
every open websocket: a message, or garbage), `drop` (close every websocket), `revoke_tokens`
(every token issued so far is refused from now on), `refuse_logins`.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client.exposition import ThreadingWSGIServer
from websockets.http11 import Request, Response
from websockets.sync.server import ServerConnection, serve

PREFIX = "/api"
WEBSOCKET_PATH = "/ws/v2/queue-status/"


@dataclass
class StandInPlatform:
    username: str
    password: str
    models: list[dict[str, Any]]
    scaling: dict[int, dict[str, Any]]
    snapshot: str
    token_lifetime: int = 3600
    rest_url: str = ""
    websocket_url: str = ""
    logins: int = 0
    refusing_logins: bool = False
    _tokens: set[str] = field(default_factory=set)
    _sockets: set[ServerConnection] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # What the test drives.
    def set_snapshot(self, text: str) -> None:
        with self._lock:
            self.snapshot = text

    def push(self, text: str | bytes) -> int:
        """Send to every open websocket; the number of sockets sent to."""
        with self._lock:
            sockets = list(self._sockets)
        for socket in sockets:
            socket.send(text)
        return len(sockets)

    def add_model(self, model: dict[str, Any], scaling: dict[str, Any]) -> None:
        with self._lock:
            self.models = [*self.models, model]
            self.scaling = {**self.scaling, model["id"]: scaling}

    def open_sockets(self) -> int:
        with self._lock:
            return len(self._sockets)

    def drop(self) -> None:
        with self._lock:
            sockets = list(self._sockets)
        for socket in sockets:
            socket.close(code=1011, reason="dropped by the test")

    def revoke_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    def refuse_logins(self, *, refuse: bool) -> None:
        with self._lock:
            self.refusing_logins = refuse

    # The REST side.
    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if not path.startswith(PREFIX + "/"):
            return _json(start_response, "404 Not Found", {"detail": "Not found."})
        path = path.removeprefix(PREFIX)
        if path == "/access_token/" and environ["REQUEST_METHOD"] == "POST":
            return self._login(environ, start_response)
        token = environ.get("HTTP_AUTHORIZATION", "").removeprefix("Bearer ")
        if not self._valid(token):
            return _json(start_response, "403 Forbidden", {"detail": "Not authenticated."})
        if path == "/v2/models/":
            return _json(start_response, "200 OK", self.models)
        if path == "/v2/queue-status/":
            with self._lock:
                body = self.snapshot.encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        parts = path.strip("/").split("/")
        if len(parts) == 4 and parts[3] == "scaling_configuration" and parts[2].isdigit():
            found = self.scaling.get(int(parts[2]))
            if found is not None:
                return _json(start_response, "200 OK", found)
        return _json(start_response, "404 Not Found", {"detail": "Not found."})

    def _login(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        try:
            body = json.loads(environ["wsgi.input"].read(length))
        except ValueError:
            body = {}
        with self._lock:
            self.logins += 1
            ok = not self.refusing_logins and (
                body.get("username") == self.username and body.get("password") == self.password
            )
            if not ok:
                return _json(
                    start_response, "401 Unauthorized", {"detail": "No active account found."}
                )
            token = secrets.token_hex(16)
            self._tokens.add(token)
        answer = {
            "access_token": token,
            "refresh_token": secrets.token_hex(16),
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
        }
        return _json(start_response, "200 OK", answer)

    def _valid(self, token: str) -> bool:
        with self._lock:
            return token in self._tokens

    # The websocket side.
    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path != WEBSOCKET_PATH:
            return connection.respond(404, "Not found.\n")
        token = request.headers.get("AUTHORIZATION", "").removeprefix("Bearer ")
        if not self._valid(token):
            return connection.respond(403, "Not authenticated.\n")
        return None

    def handler(self, connection: ServerConnection) -> None:
        with self._lock:
            self._sockets.add(connection)
            first = self.snapshot
        try:
            connection.send(first)
            for _ in connection:  # the exporter sends nothing; wait for the close
                pass
        finally:
            with self._lock:
                self._sockets.discard(connection)


def _json(start_response: Any, status: str, body: Any) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json")])
    return [data]


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@contextmanager
def stand_in_platform(
    *,
    models: list[dict[str, Any]],
    scaling: dict[int, dict[str, Any]],
    snapshot: str,
    username: str = "admin",
    password: str = "platform-pw",
    token_lifetime: int = 3600,
) -> Iterator[StandInPlatform]:
    """The stand-in on two free ports of 127.0.0.1 (REST, websocket); stopped on exit."""
    platform = StandInPlatform(username, password, models, scaling, snapshot, token_lifetime)
    rest = make_server("127.0.0.1", 0, platform.wsgi, ThreadingWSGIServer, handler_class=_Quiet)
    websocket = serve(platform.handler, "127.0.0.1", 0, process_request=platform.process_request)
    platform.rest_url = f"http://127.0.0.1:{rest.server_port}{PREFIX}"
    platform.websocket_url = f"ws://127.0.0.1:{websocket.socket.getsockname()[1]}{WEBSOCKET_PATH}"
    threads = [
        threading.Thread(target=rest.serve_forever, daemon=True),
        threading.Thread(target=websocket.serve_forever, daemon=True),
    ]
    for thread in threads:
        thread.start()
    try:
        yield platform
    finally:
        platform.drop()
        websocket.shutdown()
        rest.shutdown()
        rest.server_close()
        for thread in threads:
            thread.join(timeout=5)
