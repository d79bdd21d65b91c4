"""Every error is JSON: 400 names each bad field and why, and nothing stored changes."""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Flask, Response, current_app, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

# Where an error concerns the request body as a whole rather than one field of it.
BODY = "body"


class ApiError(Exception):
    """An error answer: a status and a JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


def bad_request(field: str, message: str) -> ApiError:
    return ApiError(400, {field: [message]})


def not_found(what: str) -> ApiError:
    return ApiError(404, {"detail": f"Not found: {what}."})


def unavailable(message: str) -> ApiError:
    return ApiError(503, {"detail": message})


def field_errors(exc: ValidationError) -> dict[str, list[str]]:
    """Pydantic's errors as {field: [reasons]}, the shape OasisPlatform (DRF) answers with."""
    errors: dict[str, list[str]] = {}
    for error in exc.errors(include_url=False):
        loc = [str(part) for part in error["loc"] if part not in ("body", "query", "form")]
        field = ".".join(loc) or BODY
        errors.setdefault(field, []).append(_reason(error))
    return errors


def _reason(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "Unknown field."
    if kind in ("model_type", "dict_type", "model_attributes_type") and not error["loc"]:
        return "The request body must be a JSON object."
    message = str(error["msg"])
    if kind.endswith("_type") or kind in ("enum", "literal_error"):
        message += f", got {_json(error.get('input'))}"
    return message[0].upper() + message[1:] + ("" if message.endswith(".") else ".")


def _json(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def validation_error_response(exc: ValidationError) -> Response:
    """flask-openapi3's hook for request validation errors."""
    response = jsonify(field_errors(exc))
    response.status_code = 400
    return response


def init_app(app: Flask) -> None:
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(ValidationError, validation_error_response)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)


def _api_error(exc: ApiError) -> tuple[Response, int]:
    return jsonify(exc.body), exc.status


def _http_error(exc: HTTPException) -> tuple[Response, int]:
    return jsonify({"detail": exc.description}), exc.code or 500


def _unexpected(exc: Exception) -> tuple[Response, int]:
    current_app.logger.exception("unhandled error")
    return jsonify({"detail": "Internal error; the server log has the details."}), 500
