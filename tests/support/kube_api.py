"""The one Kubernetes API call the workers make, emulated over real TLS on loopback.

`PATCH /api/v1/namespaces/{namespace}/pods/{name}` as the API server documents it:

- a bearer token is required: none or an unknown one is 401, a known one without the right to
  patch pods is 403 (a `Status` object each time, as the API server answers);
- the patch types are told by Content-Type: JSON merge patches (`merge-patch+json`, and
  `strategic-merge-patch+json`, which is the same on `metadata.annotations`) are applied; the
  other types the API server accepts (JSON patch, server-side apply) are not emulated and fail
  the test that sends them; any other type is 415;
- an unknown pod is 404 with a `NotFound` Status; success is 200 with the whole pod.

Only what the emulator cannot stand for itself is left out: admission, resourceVersion checks.
"""

from __future__ import annotations

import json
import ssl
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.servers import free_port

MERGE_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")
NOT_EMULATED = (
    "application/json-patch+json",
    "application/apply-patch+yaml",
    "application/apply-patch+cbor",
)
POD_PATH = ("api", "v1", "namespaces", None, "pods", None)


@dataclass
class Patch:
    namespace: str
    name: str
    content_type: str
    status: int
    annotations: dict[str, str]


@dataclass
class KubeApi:
    """The emulated API server's state: its pods, tokens, and every patch it was sent."""

    port: int
    tokens: set[str]
    forbidden_tokens: set[str] = field(default_factory=set)
    pods: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    patches: list[Patch] = field(default_factory=list)
    not_emulated: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Takes the server down (the API server is unreachable from then on).
    down: Callable[[], None] = lambda: None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def add_pod(self, namespace: str, name: str) -> None:
        self.pods[namespace, name] = {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": str(uuid.uuid4()),
                "resourceVersion": "1",
                "labels": {"app": "oasis-worker"},
            },
            "spec": {"containers": [{"name": "worker", "image": "oasis-autoscaler:test"}]},
            "status": {"phase": "Running"},
        }

    def annotation(self, namespace: str, name: str, key: str) -> str | None:
        with self.lock:
            annotations = self.pods[namespace, name]["metadata"].get("annotations") or {}
            value: str | None = annotations.get(key)
            return value

    def values(self, namespace: str, name: str, key: str) -> list[str]:
        """The annotation's value after each successful patch of the pod, in order."""
        with self.lock:
            return [
                patch.annotations[key]
                for patch in self.patches
                if (patch.namespace, patch.name) == (namespace, name)
                and patch.status == 200
                and key in patch.annotations
            ]


def status(code: int, reason: str, message: str, **details: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, null removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def pod_of(path: str) -> tuple[str, str] | None:
    parts = path.split("?", 1)[0].strip("/").split("/")
    if len(parts) != len(POD_PATH):
        return None
    if any(want is not None and part != want for part, want in zip(parts, POD_PATH, strict=True)):
        return None
    return parts[3], parts[5]


def handler_for(api: KubeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_PATCH(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            code, reply = self._patch(body)
            encoded = json.dumps(reply).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(encoded)))
            self.end_headers()
            self.wfile.write(encoded)

        def _patch(self, body: bytes) -> tuple[int, dict[str, Any]]:
            # The scheme is case-insensitive (RFC 9110); the Python client sends "bearer".
            scheme, _, token = self.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer":
                token = ""
            if token not in api.tokens | api.forbidden_tokens:
                return 401, status(401, "Unauthorized", "Unauthorized")
            pod = pod_of(self.path)
            if pod is None:
                return 404, status(404, "NotFound", "the server could not find the requested")
            namespace, name = pod
            if token in api.forbidden_tokens:
                message = (
                    f'pods "{name}" is forbidden: User "system:serviceaccount:{namespace}:worker"'
                    f' cannot patch resource "pods" in API group "" in the namespace "{namespace}"'
                )
                return 403, status(403, "Forbidden", message, name=name, kind="pods")
            content_type = self.headers.get("Content-Type", "").split(";")[0].strip()
            if content_type in NOT_EMULATED:
                api.not_emulated.append(content_type)
                return 500, status(500, "InternalError", f"{content_type} is not emulated")
            if content_type not in MERGE_TYPES:
                accepted = ", ".join((*MERGE_TYPES, *NOT_EMULATED))
                message = (
                    "the body of the request was in an unknown format - accepted media types "
                    f"include: {accepted}"
                )
                return 415, status(415, "UnsupportedMediaType", message)
            try:
                patch = json.loads(body)
            except ValueError as error:
                return 400, status(400, "BadRequest", f"error decoding patch: {error}")
            if not isinstance(patch, dict):
                return 400, status(400, "BadRequest", "a merge patch must be a JSON object")
            return self._apply(namespace, name, content_type, patch)

        def _apply(
            self, namespace: str, name: str, content_type: str, patch: dict[str, Any]
        ) -> tuple[int, dict[str, Any]]:
            with api.lock:
                current = api.pods.get((namespace, name))
                if current is None:
                    api.patches.append(Patch(namespace, name, content_type, 404, {}))
                    message = f'pods "{name}" not found'
                    return 404, status(404, "NotFound", message, name=name, kind="pods")
                updated = merge_patch(current, patch)
                metadata = updated["metadata"]
                metadata["resourceVersion"] = str(int(current["metadata"]["resourceVersion"]) + 1)
                api.pods[namespace, name] = updated
                annotations = dict(metadata.get("annotations") or {})
                api.patches.append(Patch(namespace, name, content_type, 200, annotations))
                return 200, updated

    return Handler


@contextmanager
def kube_api(certificate: str, key: str, *, token: str) -> Iterator[KubeApi]:
    """Serve the emulated API server over TLS with the given server certificate and key."""
    api = KubeApi(free_port(), tokens={token})
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)
    server = ThreadingHTTPServer(("127.0.0.1", api.port), handler_for(api))
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def down() -> None:
        if thread.is_alive():
            server.shutdown()
            server.server_close()
            thread.join()

    api.down = down
    try:
        yield api
    finally:
        down()
