"""What the chord test (tests/integration/test_broker_restart.py) and its worker's tasks
(tests/support/chord_worker.py) agree on: task names and the files of the test's gate folder."""

from __future__ import annotations

from pathlib import Path

PART = "tests.chord_worker.part"
JOIN = "tests.chord_worker.join"
# The test creates it to let the parts end.
GATE = "open"
# The join appends the parts' results here, a line per run.
JOINED = "joined"


def started(gate: Path, n: int) -> Path:
    return gate / f"started-{n}"


def returned(gate: Path, n: int) -> Path:
    return gate / f"returned-{n}"
