"""The exporter running: its loops over the platform and its HTTP server.

Three daemon threads write the state: the websocket stream (pushes), the REST resync of the
queue status (slow: it is expensive on the platform), and the models refresh (the models and
their scaling configurations, read again on an interval and at once when a snapshot names a
queue of no known model). The HTTP server answers `/metrics` (prometheus_client's WSGI app,
`name[]` included) and `/healthz` from the state alone: a scrape never calls the platform.

`/metrics` and `/healthz` answer 503 until the exporter holds both the models and a good
snapshot, and again once that snapshot is older than `max_snapshot_age_seconds`: the scaler's
scrape then fails, its own max_age_seconds runs out and KEDA's fallback applies, rather than a
frozen count being served for ever.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer
from pydantic import ValidationError

from api.exporter.collector import ExporterCollector
from api.exporter.platform import PlatformClient, PlatformError
from api.exporter.settings import ExporterSettings
from api.exporter.snapshot import SnapshotError, parse
from api.exporter.state import Channel, ExporterState, PlatformModel, View, model_queue
from api.exporter.stream import Backoff, QueueStatusStream
from scaler.configuration import ScalingConfiguration

log = logging.getLogger(__name__)
METRICS_PATH = "/metrics"
HEALTH_PATH = "/healthz"
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def read_models(
    client: PlatformClient, previous: Mapping[str, PlatformModel] | None
) -> dict[str, PlatformModel]:
    """Every model of the platform with its scaling configuration, by queue. A configuration
    that cannot be read keeps the one read before (a model never read is left out until it
    can be: publishing a default could scale it wrong); one that is not valid reads as the
    defaults, as our API reads a stored one (logged)."""
    models: dict[str, PlatformModel] = {}
    for row in client.models():
        try:
            queue, model_id = model_queue(row), int(row["id"])
        except (KeyError, TypeError, ValueError):
            log.warning("a model without id, supplier_id, model_id or version_id: skipped")
            continue
        if queue.lower() in models:
            log.warning("two models share the queue %s: the first is published", queue)
            continue
        try:
            scaling = configuration(client.scaling_configuration(model_id), queue)
        except PlatformError as error:
            old = (previous or {}).get(queue.lower())
            log.warning("model %s: scaling configuration unread (%s)", queue, error)
            if old is None:
                continue
            scaling = old.scaling
        models[queue.lower()] = PlatformModel(model_id, queue, scaling)
    return models


def configuration(body: object, queue: str) -> ScalingConfiguration:
    fields = body if isinstance(body, dict) else {}
    known = {k: v for k, v in fields.items() if k in ScalingConfiguration.model_fields}
    # The platform answers null for a field never set: the default applies.
    known = {k: v for k, v in known.items() if v is not None}
    try:
        return ScalingConfiguration.model_validate(known)
    except ValidationError as error:
        log.warning("model %s: invalid scaling configuration, using the defaults: %s", queue, error)
        return ScalingConfiguration()


@dataclass
class Exporter:
    settings: ExporterSettings
    client: PlatformClient
    state: ExporterState

    def __post_init__(self) -> None:
        self.stop = threading.Event()
        # Set when the models should be read before the next periodic refresh.
        self.models_wanted = threading.Event()
        # Unknown queues a models refresh was asked for already.
        self._asked: set[str] = set()

    @classmethod
    def from_settings(cls, settings: ExporterSettings) -> Exporter:
        client = PlatformClient(
            settings.platform_url,
            login=settings.login,
            timeout=settings.request_timeout_seconds,
            renew_fraction=settings.token_renew_fraction,
        )
        return cls(settings, client, ExporterState())

    def backoff(self) -> Backoff:
        return Backoff(self.settings.backoff_initial_seconds, self.settings.backoff_max_seconds)

    def notice(self, queues: Iterable[str]) -> None:
        """A snapshot named these queues: read the models at once if one is of no known model
        (a model created since), once per such queue: a queue that stays unknown (no model
        serves it) waits for the periodic refresh, not every snapshot."""
        models = self.state.models()
        if models is None:
            return
        new = {queue for queue in queues if queue not in models} - self._asked
        if new:
            self._asked |= new
            self.models_wanted.set()

    def threads(self) -> list[threading.Thread]:
        loops: list[tuple[str, Callable[[], None]]] = [
            ("exporter-models", self.models_loop),
            ("exporter-resync", self.resync_loop),
        ]
        url = self.settings.effective_websocket_url
        if url:
            stream = QueueStatusStream(
                url,
                self.client,
                self.state,
                self.backoff(),
                open_timeout=self.settings.request_timeout_seconds,
                on_snapshot=self.notice,
            )
            loops.append(("exporter-websocket", lambda: stream.run(self.stop)))
        return [threading.Thread(target=loop, name=name, daemon=True) for name, loop in loops]

    def models_loop(self) -> None:
        backoff = self.backoff()
        while not self.stop.is_set():
            self.models_wanted.clear()
            wait = self.settings.models_refresh_seconds
            try:
                self.state.set_models(read_models(self.client, self.state.models()))
                self.state.set_platform_up(up=True)
                backoff.reset()
            except PlatformError as error:
                self.state.set_platform_up(up=False)
                log.warning("models unread, the last ones kept: %s", error)
                wait = min(backoff.next(), wait)
            except Exception:  # the loop must outlive any surprise
                log.exception("models unread, the last ones kept")
                wait = min(backoff.next(), wait)
            self._wait(wait, self.models_wanted)

    def resync_loop(self) -> None:
        backoff = self.backoff()
        while not self.stop.is_set():
            wait = self.settings.resync_seconds
            try:
                self.resync()
                backoff.reset()
            except (PlatformError, SnapshotError) as error:
                log.warning("queue status unread, the last good snapshot kept: %s", error)
                wait = min(backoff.next(), wait)
            except Exception:
                log.exception("queue status unread, the last good snapshot kept")
                wait = min(backoff.next(), wait)
            self.stop.wait(wait)

    def resync(self) -> None:
        try:
            body = self.client.queue_status()
        except PlatformError:
            self.state.set_platform_up(up=False)
            raise
        self.state.set_platform_up(up=True)
        try:
            taken = parse(body)
        except SnapshotError:
            self.state.refuse(Channel.REST)
            raise
        self.state.offer(taken, Channel.REST)
        self.notice(taken.queues)

    def _wait(self, seconds: float, early: threading.Event) -> None:
        """Until `seconds` pass, `early` is set, or the exporter stops."""
        deadline = time.monotonic() + seconds
        while not (self.stop.is_set() or early.is_set()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            early.wait(min(remaining, 0.5))  # and look at `stop` twice a second

    def readiness(self, view: View) -> str | None:
        """Why the exporter is not ready, or None when it is."""
        if view.models is None:
            return "the platform's models are not read yet"
        if view.snapshot is None or view.age is None:
            return "no queue-status snapshot yet"
        if view.age > self.settings.max_snapshot_age_seconds:
            return (
                f"the last good snapshot is {view.age:.0f} s old "
                f"(max_snapshot_age_seconds {self.settings.max_snapshot_age_seconds:g})"
            )
        return None


def wsgi_app(exporter: Exporter, registry: CollectorRegistry) -> Callable[..., Iterable[bytes]]:
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path not in (METRICS_PATH, HEALTH_PATH):
            return _reply(start_response, "404 Not Found", {"detail": f"no route {path}"})
        view = exporter.state.view()
        problem = exporter.readiness(view)
        if path == METRICS_PATH and problem is None:
            body: Iterable[bytes] = metrics(environ, start_response)
            return body
        status = "503 Service Unavailable" if problem else "200 OK"
        return _reply(
            start_response,
            status,
            {
                "ready": problem is None,
                "problem": problem,
                "models": None if view.models is None else len(view.models),
                "snapshot_age_seconds": view.age,
                "websocket_connected": view.websocket_connected,
                "platform_up": view.platform_up,
            },
        )

    return app


def _reply(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        """Every scrape would be a line on stderr."""


@contextmanager
def running(
    settings: ExporterSettings, registry: CollectorRegistry | None = None
) -> Iterator[tuple[Exporter, int]]:
    """The exporter's loops and HTTP server; yields it and the port it serves on."""
    registry = registry if registry is not None else CollectorRegistry()
    exporter = Exporter.from_settings(settings)
    ExporterCollector(exporter.state.view, registry=registry)
    server = make_server(
        settings.host,
        settings.port,
        wsgi_app(exporter, registry),
        ThreadingWSGIServer,
        handler_class=_QuietHandler,
    )
    serving = threading.Thread(target=server.serve_forever, name="exporter-http", daemon=True)
    loops = exporter.threads()
    for thread in [serving, *loops]:
        thread.start()
    try:
        yield exporter, server.server_port
    finally:
        exporter.stop.set()
        server.shutdown()
        server.server_close()
        for thread in loops:
            thread.join(timeout=5)
