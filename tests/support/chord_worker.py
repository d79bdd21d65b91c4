"""The worker's Celery app with two tasks of a chord whose parts the test holds: a real Celery
worker runs it (`celery -A tests.support.chord_worker worker`), with the worker's settings.

A part runs until the test opens its gate (a file), so the test decides when it ends: while
the broker is down, say. The join appends the parts' results to a file, once per run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.support.chord_gate import GATE, JOIN, JOINED, PART, returned, started
from worker.settings import WorkerSettings
from worker.tasks import app, configure_app

# Loaded by the worker's command line only (it configures the worker's app from the settings).
configure_app(WorkerSettings())


@app.task(name=PART)
def part(gate: str, n: int) -> int:
    folder = Path(gate)
    started(folder, n).touch()
    while not (folder / GATE).exists():
        time.sleep(0.05)  # polling for the test's gate
    returned(folder, n).touch()
    return n


@app.task(name=JOIN)
def join(results: list[int], gate: str) -> None:
    with (Path(gate) / JOINED).open("a") as out:
        out.write(json.dumps(sorted(results)) + "\n")
