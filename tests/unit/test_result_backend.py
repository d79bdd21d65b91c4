"""The worker's result backend setting names its retrying Redis backend, and Celery reads from
it the class and the broker URL it was made from, whatever the URL's form."""

from __future__ import annotations

import pytest
from celery import Celery
from celery.app.backends import by_url

from worker.result_backend import RetryingRedisBackend, backend_url


@pytest.mark.parametrize(
    ("redis_url", "given"),
    [
        pytest.param("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0", id="tcp"),
        pytest.param(
            "redis://:p+w@redis.oasis.svc:6379/1",
            "redis://:p+w@redis.oasis.svc:6379/1",
            id="plus-in-password",
        ),
        pytest.param("rediss://redis:6380/0", "rediss://redis:6380/0", id="tls"),
        pytest.param(
            "redis+socket:///run/redis/redis.sock", "socket:///run/redis/redis.sock", id="socket"
        ),
    ],
)
def test_celery_reads_the_class_and_the_url(redis_url: str, given: str) -> None:
    backend, url = by_url(backend_url(redis_url), Celery(set_as_current=False).loader)
    assert backend is RetryingRedisBackend
    assert url == given


def test_celery_chooses_the_same_url_for_its_own_redis_backend() -> None:
    """The socket form gives up its prefix exactly as Celery's own choice does."""
    redis_url = "redis+socket:///run/redis/redis.sock"
    assert by_url(backend_url(redis_url))[1] == by_url(redis_url)[1]
