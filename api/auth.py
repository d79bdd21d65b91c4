"""Simple JWT authentication as OasisPlatform's `simple` flow: access and refresh tokens."""

from __future__ import annotations

import secrets
import sys
import time
from pathlib import Path
from typing import Any

import jwt
from flask import Flask, current_app, g, jsonify, request
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash

from api import db
from api.errors import ApiError
from api.replies import Reply
from api.schemas import BEARER, PROTECTED
from api.settings import ApiSettings
from api.store.orm import User

ALGORITHM = "HS256"
bp = APIBlueprint("auth", __name__, abp_tags=[Tag(name="auth")], abp_responses=PROTECTED)
# Endpoints reachable without a token (the client calls server_info/ before it logs in).
PUBLIC_ENDPOINTS = {
    "auth.access_token",
    "auth.refresh_token",
    "info.healthcheck",
    "info.server_info",
    "info.openapi",
    "info.metrics",
}


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=150)
    password: str = Field(min_length=1, max_length=1024)


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"
    expires_in: int


def unauthorized(message: str) -> ApiError:
    return ApiError(401, {"detail": message})


@bp.post("/access_token/", responses={200: TokenResponse})
def access_token(body: TokenRequest) -> Reply:
    """Log in with a username and password."""
    # No username holds a NUL (PostgreSQL cannot store one, and refuses it in a query).
    user = (
        None
        if "\x00" in body.username
        else db.session().scalar(select(User).where(User.username == body.username))
    )
    if user is None or not check_password_hash(user.password_hash, body.password):
        raise unauthorized("Invalid username or password.")
    return jsonify(_tokens(user.id))


@bp.post("/refresh_token/", responses={200: TokenResponse}, security=BEARER)
def refresh_token() -> Reply:
    """New tokens for the refresh token in `Authorization: Bearer` (the body is ignored)."""
    claims = _claims(_bearer(), "refresh")
    user = db.session().get(User, int(claims["sub"]))
    if user is None:
        raise unauthorized("The token's user no longer exists.")
    return jsonify(_tokens(user.id))


def _tokens(user_id: int) -> dict[str, Any]:
    settings: ApiSettings = current_app.config["SETTINGS"]
    lifetime = settings.access_token_lifetime_seconds
    return {
        "access_token": _encode(user_id, "access", lifetime),
        "refresh_token": _encode(user_id, "refresh", settings.refresh_token_lifetime_seconds),
        "token_type": "Bearer",
        "expires_in": lifetime,
    }


def _encode(user_id: int, kind: str, lifetime: int) -> str:
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "type": kind,
        "iat": now,
        "exp": now + lifetime,
        "jti": secrets.token_hex(8),
    }
    return jwt.encode(claims, current_app.config["JWT_SECRET"], algorithm=ALGORITHM)


def _bearer() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("Authentication credentials were not provided (Authorization: Bearer).")
    return token.strip()


def _claims(token: str, kind: str) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            current_app.config["JWT_SECRET"],
            algorithms=[ALGORITHM],
            options={"require": ["exp", "sub", "type"]},
        )
    except jwt.ExpiredSignatureError:
        raise unauthorized("The token has expired.") from None
    except jwt.InvalidTokenError:
        raise unauthorized("The token is not valid.") from None
    if claims.get("type") != kind:
        raise unauthorized(f"An {kind} token is required.")
    return claims


def _require_token() -> None:
    if request.endpoint in PUBLIC_ENDPOINTS or request.endpoint is None:
        return
    g.user_id = int(_claims(_bearer(), "access")["sub"])


def jwt_secret(settings: ApiSettings) -> str:
    """The configured secret, or one generated once and kept in the data dir."""
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value()
    path: Path = settings.data_dir / "jwt-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip()


def ensure_admin(settings: ApiSettings) -> None:
    """Create the first user when there is none; a generated password is printed once."""
    session = db.session()
    if session.scalar(select(func.count()).select_from(User)):
        return
    if settings.admin_password is not None:
        password = settings.admin_password.get_secret_value()
    else:
        password = secrets.token_urlsafe(12)
        print(
            f"Created user {settings.admin_username!r} with password {password!r} "
            "(set OASIS_AUTOSCALER_ADMIN_PASSWORD to choose it).",
            file=sys.stderr,
        )
    session.add(
        User(username=settings.admin_username, password_hash=generate_password_hash(password))
    )
    session.commit()


def init_app(app: Flask) -> None:
    app.before_request(_require_token)
