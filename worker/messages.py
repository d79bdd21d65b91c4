"""The main tasks the API puts on a model's queue, by name: the splitter consumes them.

Each carries one argument, the analysis id; the splitter reads the rest from the database and
checks the analysis is still in the queued state the API left it in before acting.
"""

from __future__ import annotations

GENERATE_INPUTS_TASK = "oasis.generate_inputs"
RUN_TASK = "oasis.run"
GENERATE_AND_RUN_TASK = "oasis.generate_and_run"


def model_queue(supplier_id: str, model_id: str, version_id: str) -> str:
    """A model's Celery queue: its workers consume it, its main tasks and sub-tasks go to it."""
    return f"{supplier_id}-{model_id}-{version_id}"
