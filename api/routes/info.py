"""Health, server information, the OpenAPI document and Prometheus metrics: no token needed."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version

from flask import Response, current_app, jsonify, request
from flask_openapi3 import APIBlueprint, Tag
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from api.metrics import exposition
from api.replies import Reply
from api.schemas import REFUSALS, Health, ServerInfo

bp = APIBlueprint("info", __name__, abp_tags=[Tag(name="info")], abp_responses=REFUSALS)


@bp.get("/healthcheck/", responses={200: Health})
def healthcheck() -> Reply:
    """Liveness: the process answers."""
    return jsonify({"status": "OK"})


@bp.get("/server_info/", responses={200: ServerInfo})
def server_info() -> Reply:
    """Version and the authentication flow (the client reads `config.API_AUTH_TYPE`)."""
    return jsonify(
        {"version": _version(), "config": {"API_AUTH_TYPE": "simple", "DEFAULT_RUN_MODE": "V2"}}
    )


@bp.get("/openapi.json", doc_ui=False)
def openapi() -> Reply:
    """The OpenAPI document, built from the routes and their pydantic models."""
    return jsonify(current_app.api_doc)  # type: ignore[attr-defined]


@bp.get("/metrics", doc_ui=False)
def metrics() -> Reply:
    """Prometheus metrics of this process; `?name[]=a&name[]=b` for those samples only."""
    registry: CollectorRegistry = current_app.extensions["metrics_registry"]
    body = exposition(registry, request.args.getlist("name[]"))
    return Response(body, mimetype=CONTENT_TYPE_LATEST)


def _version() -> str:
    try:
        return package_version("oasis-autoscaler")
    except PackageNotFoundError:
        return "unknown"
