"""Servers shared by the integration tests: one Redis per session, an API per database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from redis import Redis

from api.settings import ApiSettings
from tests.support.servers import api_server, postgres_server, redis_server

PASSWORD = "secret-pw"
# An authenticated request to the API: call(method, path, **requests_kwargs).
Call = Callable[..., requests.Response]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@dataclass(frozen=True)
class ApiProcess:
    url: str
    # The API's database, for tests that write what a worker would.
    database_url: str


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def api_process(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[ApiProcess]:
    """The API as a real process, once on SQLite and once on PostgreSQL."""
    database_url = (
        request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    )
    data_dir: Path = tmp_path_factory.mktemp(f"api-{request.param}") / "data"
    settings = ApiSettings(data_dir=data_dir, database_url=database_url)
    with api_server(
        data_dir, database_url=database_url, redis_url=redis_url, password=PASSWORD
    ) as url:
        yield ApiProcess(url, settings.effective_database_url)


@pytest.fixture(scope="session")
def api_url(api_process: ApiProcess) -> str:
    return api_process.url


@pytest.fixture
def api(api_url: str) -> Call:
    """Requests to the API as the admin (extra `headers` are added to the bearer token)."""
    token = requests.post(
        f"{api_url}/access_token/", json={"username": "admin", "password": PASSWORD}, timeout=10
    )
    auth = {"Authorization": f"Bearer {token.json()['access_token']}"}

    def call(
        method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> requests.Response:
        return requests.request(
            method, api_url + path, headers={**auth, **(headers or {})}, timeout=10, **kwargs
        )

    return call


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    client.close()
