"""One stack for the end-to-end tests: a private Redis, the API on SQLite, and model workers."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from oasislmf.platform_api.client import APIClient

from tests.support.numba import numba_cache_root
from tests.support.servers import api_server, redis_server, worker_server
from worker.demo_model import demo_analysis_settings, demo_locations, model_settings

PASSWORD = "e2e-password"


@dataclass
class Stack:
    root: Path
    data_dir: Path
    redis_url: str
    api_url: str
    numba_cache: Path

    def client(self) -> APIClient:
        return APIClient(api_url=self.api_url, username="admin", password=PASSWORD)

    def worker(self, queue: str, **kwargs: Any) -> AbstractContextManager[Any]:
        return worker_server(
            self.data_dir,
            redis_url=self.redis_url,
            queue=queue,
            numba_cache_dir=self.numba_cache,
            **kwargs,
        )


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("stack")
    numba_cache = numba_cache_root()
    with (
        redis_server(root) as redis_url,
        api_server(
            root / "data", database_url=None, redis_url=redis_url, password=PASSWORD
        ) as api_url,
    ):
        yield Stack(root, root / "data", redis_url, api_url, numba_cache)


Analysis = Callable[..., int]


@pytest.fixture(scope="session")
def new_model(stack: Stack) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A new model (its own queue) with the demo model's settings and the given chunking."""

    def make(chunking: dict[str, Any]) -> dict[str, Any]:
        client = stack.client()
        model: dict[str, Any] = client.models.create(
            f"E2E{uuid.uuid4().hex[:8]}", "Demo", "1"
        ).json()
        client.models.settings.post(model["id"], model_settings())
        client.models.chunking_configuration.post(model["id"], chunking)
        return model

    return make


@pytest.fixture(scope="session")
def new_analysis(stack: Stack) -> Callable[..., int]:
    def make(model: dict[str, Any], locations: int = 10, samples: int = 10) -> int:
        client = stack.client()
        portfolio = client.portfolios.create(f"p-{uuid.uuid4().hex[:6]}").json()["id"]
        client.portfolios.location_file.post(
            portfolio, demo_locations(locations).encode(), content_type="text/csv"
        )
        analysis = client.analyses.create(
            f"a-{uuid.uuid4().hex[:6]}", portfolio, model["id"]
        ).json()["id"]
        client.analyses.settings.post(analysis, demo_analysis_settings(samples))
        return int(analysis)

    return make
