"""The API's /metrics as docs/metrics.md describes it, written by hand so tests control every value.

It stands in for the publisher in the scaler's tests (the real one is the API's `/metrics`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CONFIGURATION_GAUGES = {
    "worker_count_fixed": "oasis_model_worker_count_fixed",
    "worker_count_min": "oasis_model_worker_count_min",
    "worker_count_max": "oasis_model_worker_count_max",
    "chunks_per_worker": "oasis_model_chunks_per_worker",
}
DEFAULTS: dict[str, Any] = {
    "scaling_strategy": "FIXED_WORKERS",
    "worker_count_fixed": 1,
    "worker_count_min": 0,
    "worker_count_max": 10,
    "chunks_per_worker": 10,
}


def published_text(models: Mapping[str, Mapping[str, Any]]) -> str:
    """Prometheus text for `models`: model -> scaling fields (defaults filled in, as the API
    does) plus `analyses` and `pending`. Values are written as given, so a test can publish
    "NaN" or a strategy that does not exist."""
    families: dict[str, list[str]] = {}

    def add(name: str, labels: dict[str, str], value: object) -> None:
        rendered = ",".join(f'{key}="{text}"' for key, text in labels.items())
        families.setdefault(name, []).append(f"{name}{{{rendered}}} {value}")

    for model, fields in models.items():
        merged = {**DEFAULTS, **fields}
        add("oasis_model_scaling_info", {"model": model, "strategy": merged["scaling_strategy"]}, 1)
        add("oasis_model_analyses", {"model": model}, merged.get("analyses", 0))
        add("oasis_model_pending_sub_tasks", {"model": model}, merged.get("pending", 0))
        add("oasis_model_queue_messages", {"model": model}, merged.get("pending", 0))
        for field, gauge in CONFIGURATION_GAUGES.items():
            add(gauge, {"model": model}, merged[field])
    lines = []
    for name, samples in families.items():
        lines += [f"# HELP {name} {name}", f"# TYPE {name} gauge", *samples]
    return "\n".join(lines) + "\n"


@dataclass
class Publisher:
    """A /metrics endpoint on loopback whose text the test sets, and which it can take down."""

    port: int
    text: str = ""
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def publish(self, models: Mapping[str, Mapping[str, Any]]) -> None:
        self.text = published_text(models)

    def up(self) -> None:
        publisher = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = publisher.text.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: it is scraped twice a second

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_port
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
        """Stop listening: scrapes get "connection refused", as from a dead API pod."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@contextmanager
def publisher(models: Mapping[str, Mapping[str, Any]] | None = None) -> Iterator[Publisher]:
    served = Publisher(port=0)
    served.publish(models or {})
    served.up()
    try:
        yield served
    finally:
        served.down()
