"""Benchmark: what one queue-status message costs the exporter, against decoding it alone.

Builds a message in the shape a running OasisPlatform pushes (tests/data/oasisplatform): `--models`
model queues, each with `--analyses` analyses, every analysis listed again under `celery-v2` (as
the platform lists an analysis under every queue it has sub-tasks on), plus the system queues.
Then, in turns, `--repeat` times each:

- decode (baseline): `json.loads` of the text, the least any reader of the message does;
- convert: `api.exporter.snapshot.parse` (decode, validate the whole message, count each
  model's work);
- scrape: the exporter's whole `/metrics` rendered from the state holding that snapshot and the
  models (prometheus_client's `generate_latest` over the collector), and the scaler's light
  scrape of it (`name[]` of its inputs).

Printed: the message's size, the median time of each, and its ratio to the baseline.

    .venv/bin/python bench/exporter.py [--models 1000] [--analyses 5] [--repeat 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from api.exporter.collector import ExporterCollector
from api.exporter.snapshot import parse
from api.exporter.state import Channel, ExporterState, PlatformModel
from scaler.configuration import ScalingConfiguration, ScalingStrategy
from scaler.metric_names import SCALER_INPUTS


def queue(name: str, pending: int, messages: int, workers: int) -> dict[str, Any]:
    return {
        "name": name,
        "pending_count": pending,
        "queued_count": 0,
        "running_count": 0,
        "queue_message_count": messages,
        "worker_count": workers,
        "models": [],
    }


def analysis(number: int, model_queue: str) -> dict[str, Any]:
    return {
        "analysis": {
            "name": f"a{number}",
            "id": number,
            "portfolio": number,
            "model": number,
            "status": "RUN_STARTED",
            "priority": 1 + number % 10,
            "analysis_chunks": 10,
            "lookup_chunks": 3,
            "sub_task_count": 20,
            "queue_names": [model_queue, "celery-v2"],
            "status_count": {
                "TOTAL_IN_QUEUE": 12,
                "TOTAL": 20,
                "PENDING": 10,
                "QUEUED": 1,
                "STARTED": 1,
                "COMPLETED": 8,
                "CANCELLED": 0,
                "ERROR": 0,
            },
        },
        "updated_tasks": [],
    }


def message(models: int, per_model: int) -> str:
    content = []
    everything = []
    for number in range(models):
        name = f"Supplier{number}-Model-1-v2"
        listed = [analysis(number * per_model + i, name) for i in range(per_model)]
        everything += listed
        content.append({"queue": queue(name, 10 * per_model, 3, 2), "analyses": listed})
    content.append({"queue": queue("celery-v2", len(everything), 0, 1), "analyses": everything})
    content.append({"queue": queue("task-controller", 0, 0, 1), "analyses": []})
    return json.dumps(
        {
            "time": "2026-12-05T18:28:00.145216Z",
            "type": "queue_status.updated",
            "status": "SUCCESS",
            "content": content,
        }
    )


def median_ms(call: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--analyses", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    text = message(args.models, args.analyses)
    state = ExporterState()
    configuration = ScalingConfiguration(scaling_strategy=ScalingStrategy.DYNAMIC_TASKS)
    state.set_models(
        {
            f"Supplier{n}-Model-1-v2": PlatformModel(n, f"Supplier{n}-Model-1-v2", configuration)
            for n in range(args.models)
        }
    )
    taken = parse(text)
    assert taken.work("Supplier0-Model-1-v2").analyses == args.analyses
    state.offer(taken, Channel.WEBSOCKET)
    registry = CollectorRegistry()
    ExporterCollector(state.view, registry=registry)
    light = registry.restricted_registry(SCALER_INPUTS)

    rows = [
        ("decode (baseline)", lambda: json.loads(text)),
        ("convert", lambda: parse(text)),
        ("scrape, whole /metrics", lambda: generate_latest(registry)),
        ("scrape, the scaler's inputs", lambda: generate_latest(light)),
    ]
    results = {name: median_ms(call, args.repeat) for name, call in rows}
    baseline = results["decode (baseline)"]
    print(
        f"one message: {args.models} model queues x {args.analyses} analyses "
        f"(each listed twice), {len(text) / 1e6:.1f} MB; median of {args.repeat}"
    )
    print(f"{'':32} {'ms':>9} {'x decode':>9}")
    for name, value in results.items():
        print(f"{name:32} {value:9.1f} {value / baseline:9.2f}")


if __name__ == "__main__":
    main()
