"""The demo: register the built-in model, upload a portfolio, run one analysis, all through the
platform's own client (oasislmf's APIClient), as a newcomer would.

The model scales with DYNAMIC_TASKS (2 chunks per worker, at most 3 workers) and chunks its
input generation in 4 and its losses in 8, so the live view shows workers rising with the
chunks and falling back to zero when the analysis is done.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from oasislmf.platform_api.client import APIClient  # type: ignore[import-untyped]

from api.store.statuses import ENDED
from worker.demo_model import (
    MODEL_ID,
    SUPPLIER_ID,
    VERSION_ID,
    demo_analysis_settings,
    demo_locations,
    model_settings,
)
from worker.messages import model_queue

QUEUE = model_queue(SUPPLIER_ID, MODEL_ID, VERSION_ID)
SCALING = {"scaling_strategy": "DYNAMIC_TASKS", "chunks_per_worker": 2, "worker_count_max": 3}
CHUNKING = {
    "lookup_strategy": "FIXED_CHUNKS",
    "fixed_lookup_chunks": 4,
    "loss_strategy": "FIXED_CHUNKS",
    "fixed_analysis_chunks": 8,
}


@dataclass(frozen=True)
class DemoRun:
    analysis: int
    status: str


def start_demo(client: APIClient, locations: int) -> int:
    """Register (or reuse) the demo model, upload `locations` locations, queue an analysis."""
    model = _demo_model(client)
    portfolio = client.portfolios.create("demo portfolio").json()["id"]
    csv = demo_locations(locations).encode()
    client.portfolios.location_file.post(portfolio, csv, content_type="text/csv")
    analysis: int = client.analyses.create("demo analysis", portfolio, model).json()["id"]
    client.analyses.settings.post(analysis, demo_analysis_settings())
    client.analyses.generate_and_run(analysis)
    return analysis


def wait_for_demo(
    client: APIClient, analysis: int, deadline: float, on_status: Callable[[str], None]
) -> DemoRun:
    """Poll the analysis until it ends (or `deadline` seconds pass: TimeoutError)."""
    stop = time.monotonic() + deadline
    status = ""
    while time.monotonic() < stop:
        now = str(client.analyses.get(analysis).json()["status"])
        if now != status:
            status = now
            on_status(status)
        if status in ENDED:
            return DemoRun(analysis, status)
        time.sleep(1)  # polling with a deadline
    raise TimeoutError(f"the demo analysis {analysis} did not end within {deadline:.0f} s")


def _demo_model(client: APIClient) -> int:
    found: list[dict[str, Any]] = client.models.search({"supplier_id": SUPPLIER_ID}).json()
    for model in found:
        if model.get("queue_name") == QUEUE:
            return int(model["id"])
    model_id = int(client.models.create(SUPPLIER_ID, MODEL_ID, VERSION_ID).json()["id"])
    client.models.settings.post(model_id, model_settings())
    client.models.scaling_configuration.post(model_id, SCALING)
    client.models.chunking_configuration.post(model_id, CHUNKING)
    return model_id
