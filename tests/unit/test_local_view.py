"""The live view of `up`: what a newcomer reads while the workers rise and fall."""

from __future__ import annotations

import io
import re

from rich.console import Console

from cli.local.keda import ModelScaling
from cli.local.view import Work, changes, line, table

SCALING = ModelScaling(replicas=3, metric=3, active=True, running=3, busy=2)
# Four sub-tasks still to run, two of them on the queue or running: the others wait for their
# stage (the steps after a chord), not for a worker.
WORK = Work(analyses=1, pending=4, queued_or_running=2)


def test_a_line_tells_waiting_for_a_stage_from_waiting_for_a_worker() -> None:
    assert line("M-1-1", SCALING, WORK) == (
        "M-1-1: analyses 1, sub-tasks to run 4 (2 queued or running), desired 3, replicas 3, "
        "workers 3 (2 busy, 0 stopping)"
    )


def test_the_table_shows_the_queued_or_running_column() -> None:
    console = Console(file=io.StringIO(), width=200, record=True)
    console.print(table({"M-1-1": SCALING}, {"M-1-1": WORK}))
    lines = console.export_text().splitlines()
    rows = [[cell.strip() for cell in re.split("[│┃]", row)[1:-1]] for row in lines]
    header = next(row for row in rows if row and row[0] == "model")
    model = next(row for row in rows if row and row[0] == "M-1-1")
    shown = dict(zip(header, model, strict=True))
    assert (shown["sub-tasks to run"], shown["queued or running"], shown["desired"]) == (
        "4",
        "2",
        "3",
    )


def test_only_changed_lines_are_said() -> None:
    said: list[str] = []
    shown = changes({}, {"M-1-1": SCALING}, {"M-1-1": WORK}, said.append)
    changes(shown, {"M-1-1": SCALING}, {"M-1-1": WORK}, said.append)
    assert said == [line("M-1-1", SCALING, WORK)]
