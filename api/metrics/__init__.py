"""The platform's Prometheus metrics, computed when scraped (docs/metrics.md is the contract).

`collector.ModelCollector` reads everything fresh on each scrape in a fixed number of round
trips, however many models there are: the database (`database`: the models, analyses and pending
sub-tasks per model) and one Redis pipeline (`broker`: every model queue's lists, the reserved
messages, and the hashes the workers record their sub-tasks' activity in, worker/activity.py),
plus two round trips for the workers' records of presence (worker/presence.py). `families`
builds what is published from what was read.
"""

from __future__ import annotations

from flask import Flask, current_app
from prometheus_client import CollectorRegistry
from redis import Redis

from api.metrics.collector import ModelCollector, exposition
from worker import activity

__all__ = ["ModelCollector", "exposition", "init_app", "telemetry_redis"]

# app.extensions key of the Redis client that records and reads the metrics.
REDIS_EXTENSION = "metrics_redis"


def init_app(app: Flask, redis_url: str, registry: CollectorRegistry) -> None:
    """Publish the platform's metrics on `registry`; the API's own records go through the same
    Redis client (`telemetry_redis`)."""
    redis = activity.connect(redis_url)
    app.extensions[REDIS_EXTENSION] = redis
    ModelCollector(app.extensions["db_sessions"], redis, registry=registry)


def telemetry_redis() -> Redis:
    """The current app's client for recording sub-task activity (worker/activity.py)."""
    redis: Redis = current_app.extensions[REDIS_EXTENSION]
    return redis
