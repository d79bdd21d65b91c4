"""The main tasks the API puts on a model's queue, by name: the splitter consumes them.

Each carries one argument, the analysis id; the splitter reads the rest from the database and
checks the analysis is still in the queued state the API left it in before acting.
"""

from __future__ import annotations

GENERATE_INPUTS_TASK = "oasis.generate_inputs"
RUN_TASK = "oasis.run"
GENERATE_AND_RUN_TASK = "oasis.generate_and_run"
