"""The API app in-process (Flask test client, SQLite): authentication, migrations, OpenAPI."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask.testing import FlaskClient
from flask_openapi3 import OpenAPI

from api.app import create_app
from api.auth import PUBLIC_ENDPOINTS
from api.settings import ApiSettings
from api.store.engine import make_engine
from api.store.orm import Base

PASSWORD = "pw-for-tests"


@pytest.fixture
def settings(tmp_path: Path) -> ApiSettings:
    # No Redis: nothing here publishes a task.
    return ApiSettings(
        data_dir=tmp_path / "data",
        admin_password=PASSWORD,
        redis_url="redis://127.0.0.1:9/0",
        access_token_lifetime_seconds=60,
    )


@pytest.fixture
def app(settings: ApiSettings) -> OpenAPI:
    return create_app(settings)


@pytest.fixture
def client(app: OpenAPI) -> Iterator[FlaskClient]:
    with app.test_client() as client:
        yield client


def login(client: FlaskClient) -> dict[str, str]:
    response = client.post("/access_token/", json={"username": "admin", "password": PASSWORD})
    assert response.status_code == 200
    tokens: dict[str, str] = response.json  # type: ignore[assignment]
    return tokens


def protected_urls(app: OpenAPI) -> list[tuple[str, str]]:
    urls = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC_ENDPOINTS or rule.endpoint == "static":
            continue
        path = rule.rule
        for argument in rule.arguments:
            path = path.replace(f"<int:{argument}>", "1")
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            urls.append((method, path))
    return urls


def test_every_route_but_the_public_ones_needs_a_token(app: OpenAPI, client: FlaskClient) -> None:
    urls = protected_urls(app)
    assert len(urls) > 30
    for method, path in urls:
        for headers in ({}, {"Authorization": ""}, {"Authorization": "Bearer junk"}):
            response = client.open(path, method=method, headers=headers)
            assert response.status_code == 401, (method, path, headers)


def test_public_routes_answer_without_a_token(client: FlaskClient) -> None:
    assert client.get("/healthcheck/").status_code == 200
    assert client.get("/server_info/").json["config"]["API_AUTH_TYPE"] == "simple"  # type: ignore[index]
    assert "/v2/models/" in client.get("/openapi.json").json["paths"]  # type: ignore[index]
    assert b"process_cpu_seconds_total" in client.get("/metrics").data


def test_wrong_password_is_401(client: FlaskClient) -> None:
    response = client.post("/access_token/", json={"username": "admin", "password": "nope"})
    assert response.status_code == 401


def test_refresh_gives_a_working_access_token(client: FlaskClient) -> None:
    tokens = login(client)
    refreshed = client.post(
        "/refresh_token/",
        headers={
            "Authorization": f"Bearer {tokens['refresh_token']}",
            "Content-Type": "application/json",
        },
    )
    assert refreshed.status_code == 200
    access = refreshed.json["access_token"]  # type: ignore[index]
    assert (
        client.get("/v2/models/", headers={"Authorization": f"Bearer {access}"}).status_code == 200
    )


def test_a_refresh_token_is_not_an_access_token(client: FlaskClient) -> None:
    tokens = login(client)
    response = client.get(
        "/v2/models/", headers={"Authorization": f"Bearer {tokens['refresh_token']}"}
    )
    assert response.status_code == 401
    assert "access token is required" in response.json["detail"]  # type: ignore[index]


def test_an_expired_token_is_401(app: OpenAPI, client: FlaskClient) -> None:
    past = int(time.time()) - 10
    token = jwt.encode(
        {"sub": "1", "type": "access", "iat": past - 60, "exp": past},
        app.config["JWT_SECRET"],
        algorithm="HS256",
    )
    response = client.get("/v2/models/", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert "expired" in response.json["detail"]  # type: ignore[index]


def test_the_jwt_secret_survives_a_restart(settings: ApiSettings) -> None:
    assert create_app(settings).config["JWT_SECRET"] == create_app(settings).config["JWT_SECRET"]


def test_migrations_build_the_schema_the_code_declares(app: OpenAPI, settings: ApiSettings) -> None:
    engine = make_engine(settings.effective_database_url)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_openapi_states_the_configuration_rules(client: FlaskClient) -> None:
    document = client.get("/openapi.json").json
    schemas = document["components"]["schemas"]  # type: ignore[index]
    update = schemas["ScalingConfigurationUpdate"]
    assert update["additionalProperties"] is False
    assert update["properties"]["chunks_per_worker"]["minimum"] == 1
    assert update["properties"]["worker_count_max"]["maximum"] == 2**31 - 1
