"""Benchmark: the scaler's light scrape of the API's /metrics against the full one.

Starts a private Redis and the API (SQLite), registers `--models` models, and records for each
of them, straight into Redis in the layout of worker/activity.py, sub-task counters for every
stage and status and a run-time histogram for both stages (every bucket filled), as a platform
that has run every model for a while holds them; plus `--workers` records of presence. Then it
scrapes, in turns, `--repeat` times each:

- full (baseline): `GET /metrics`, what Prometheus and, before, the scaler asked for;
- light: `GET /metrics?name[]=...` with the scaler's inputs (`scaler.metric_names.SCALER_INPUTS`),
  what `scaler.sources.ScrapeSource` asks for now.

Printed side by side: the body's size, the median time of the HTTP request, and the median time
of the whole refresh the scaler runs on it (request, parsing, `build_states`).

    .venv/bin/python bench/scrape.py [--models 1000] [--workers 200] [--repeat 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
from redis import Redis
from redis.typing import EncodableT, FieldT
from sqlalchemy.orm import Session

from api.store.engine import make_engine
from api.store.orm import Model
from cli.local.launch import api_server, redis_server
from scaler.samples import build_states
from scaler.sources import light_scrape_query, text_samples
from worker import activity
from worker.presence import Presence

FULL, LIGHT = "full (baseline)", "light (scaler)"
Fields = dict[FieldT, EncodableT]


@dataclass
class Runs:
    sizes: list[int] = field(default_factory=list)
    request_ms: list[float] = field(default_factory=list)
    refresh_ms: list[float] = field(default_factory=list)
    models: int = 0


def populate(database_url: str, redis: Redis, models: int, workers: int) -> list[str]:
    """`models` models in the database, each with sub-task activity in Redis; their queues."""
    engine = make_engine(database_url)
    with Session(engine) as session:
        rows = [
            Model(supplier_id=f"Supplier{n:04d}", model_id="Model", version_id="1")
            for n in range(models)
        ]
        session.add_all(rows)
        session.commit()
        queues = [row.queue_name for row in rows]
    engine.dispose()
    with redis.pipeline(transaction=False) as pipe:
        for n, queue in enumerate(queues):
            counters, durations = recorded_activity(queue, seed=n)
            pipe.hset(activity.SUB_TASKS_KEY, mapping=counters)
            pipe.hset(activity.DURATION_KEY, mapping=durations)
        pipe.execute()
    for n in range(workers):
        queue = queues[n % len(queues)]
        Presence(
            redis, node=f"{queue}.{n}@bench", queue=queue, ttl_seconds=3600, refresh_seconds=60
        ).refresh()
    return queues


def recorded_activity(queue: str, seed: int) -> tuple[Fields, Fields]:
    counters: Fields = {}
    durations: Fields = {}
    for stage in activity.STAGES:
        for k, status in enumerate(activity.STATUSES):
            counters[activity.counter_field(queue, stage, status)] = 100 + seed + k
        for k, bound in enumerate(activity.BUCKETS):
            durations[activity.bound_field(queue, stage, bound)] = 1 + (seed + k) % 7
        durations[f"{queue}|{stage}|{activity.COUNT}"] = 200
        durations[f"{queue}|{stage}|{activity.SUM}"] = 1234.5 + seed
    return counters, durations


def scrape(session: requests.Session, url: str, light: bool, runs: Runs) -> None:
    params = light_scrape_query() if light else []
    started = time.perf_counter()
    response = session.get(url, params=params, timeout=60)
    response.raise_for_status()
    fetched = time.perf_counter()
    states = build_states(text_samples(response.text)).states
    done = time.perf_counter()
    runs.sizes.append(len(response.content))
    runs.request_ms.append((fetched - started) * 1000)
    runs.refresh_ms.append((done - started) * 1000)
    runs.models = len(states)


def report(results: dict[str, Runs], models: int, workers: int, repeat: int) -> None:
    from rich.console import Console
    from rich.table import Table

    full, light = results[FULL], results[LIGHT]
    table = Table(
        title=f"/metrics with {models:,} models (sub-task counters and histograms for every "
        f"one) and {workers} workers: median of {repeat} scrapes"
    )
    for name in ("", FULL, LIGHT, "light / full"):
        table.add_column(name, justify="right")
    rows = (
        ("body bytes", statistics.median(full.sizes), statistics.median(light.sizes), "{:,.0f}"),
        (
            "HTTP request ms",
            statistics.median(full.request_ms),
            statistics.median(light.request_ms),
            "{:.1f}",
        ),
        (
            "scaler refresh ms (request, parse, build_states)",
            statistics.median(full.refresh_ms),
            statistics.median(light.refresh_ms),
            "{:.1f}",
        ),
    )
    for label, one, other, spec in rows:
        table.add_row(label, spec.format(one), spec.format(other), f"{other / one:.3f}")
    table.add_row("models the scaler knows", str(full.models), str(light.models), "")
    Console(width=120).print(table)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-scrape-") as folder:
        root = Path(folder)
        data_dir = root / "data"
        with (
            redis_server(root) as redis_url,
            api_server(data_dir, database_url=None, redis_url=redis_url) as api_url,
        ):
            redis = Redis.from_url(redis_url)
            populate(f"sqlite:///{data_dir / 'api.sqlite3'}", redis, args.models, args.workers)
            results = {FULL: Runs(), LIGHT: Runs()}
            with requests.Session() as session:
                url = f"{api_url}/metrics"
                scrape(session, url, light=False, runs=Runs())  # warm-up: imports, caches
                for turn in range(args.repeat):
                    order = (FULL, LIGHT) if turn % 2 == 0 else (LIGHT, FULL)
                    for name in order:
                        scrape(session, url, light=name == LIGHT, runs=results[name])
            redis.close()
    if results[FULL].models != results[LIGHT].models:
        print("the light scrape knows other models than the full one", file=sys.stderr)
        return 1
    report(results, args.models, args.workers, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
