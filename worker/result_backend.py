"""Celery's Redis result backend, with a chord's counting that waits out a broker restart.

The result backend is the broker's Redis. When a chunk of a chord ends, its worker stores the
result, then adds it to the chord's count (`on_chord_part_return`); the worker whose part
completes the count publishes the join. With `result_backend_always_retry` (worker/tasks.py)
Celery retries the store on a connection error, but not the count: a Redis that goes away
between the two would leave the chord one part short for ever, and its join unpublished.

So the count is retried here too, on the errors the backend deems safe to retry (the connection
errors), with the same jittered back-off as the store. Counting a part twice changes nothing:
Celery's script records each part once by its task id and place in the chord.

Celery takes a backend class in the URL: `<module>:<class>+<url>` (`backend_url`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery.backends.redis import RedisBackend
from celery.utils.time import get_exponential_backoff_interval

log = logging.getLogger(__name__)

CLASS_PATH = f"{__name__}:RetryingRedisBackend"


def backend_url(redis_url: str) -> str:
    """The result backend setting for the broker at `redis_url`: this module's backend on it.

    Celery splits the setting at its first `+` into the class and the URL the class is given,
    so a URL whose scheme names a transport (`redis+socket://`) gives up that prefix, as it
    does when Celery chooses its own Redis backend for it.
    """
    scheme, separator, _ = redis_url.partition("://")
    url = redis_url.split("+", 1)[1] if separator and "+" in scheme else redis_url
    return f"{CLASS_PATH}+{url}"


class RetryingRedisBackend(RedisBackend):  # type: ignore[misc]
    def on_chord_part_return(
        self, request: Any, state: Any, result: Any, propagate: Any = None, **kwargs: Any
    ) -> Any:
        tries = 0
        while True:
            try:
                return super().on_chord_part_return(
                    request, state, result, propagate=propagate, **kwargs
                )
            except Exception as error:
                if not (self.always_retry and self.exception_safe_to_retry(error)):
                    raise
                if tries >= self.max_retries:
                    raise
                tries += 1
                log.warning(
                    "counting a part of chord %s failed (%s); trying again", request.group, error
                )
                time.sleep(
                    get_exponential_backoff_interval(
                        self.base_sleep_between_retries_ms,
                        tries,
                        self.max_sleep_between_retries_ms,
                        True,
                    )
                    / 1000
                )
