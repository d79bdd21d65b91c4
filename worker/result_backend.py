"""Celery's Redis result backend, with a chord's counting that waits out a broker restart.

The result backend is the broker's Redis. When a chunk of a chord ends, its worker stores the
result, then adds it to the chord's count (`on_chord_part_return`); the worker whose part
completes the count publishes the join. With `result_backend_always_retry` (worker/tasks.py)
Celery retries the store on a connection error, but not the count: a Redis that goes away
between the two would leave the chord one part short for ever, and its join unpublished.

So the count is retried here too, on the errors the backend deems safe to retry (the connection
errors), with the same jittered back-off as the store. Counting a part twice changes nothing:
Celery's script records each part once by its task id and place in the chord.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery.backends.redis import RedisBackend
from celery.utils.time import get_exponential_backoff_interval

log = logging.getLogger(__name__)


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
