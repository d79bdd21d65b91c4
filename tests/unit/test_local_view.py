"""The live view of `up`: what a newcomer reads while the workers rise and fall."""

from __future__ import annotations

import io
import re
import threading
from types import SimpleNamespace

import pytest
from rich.console import Console

from cli.local import run, view
from cli.local.keda import ModelScaling
from cli.local.pool import PoolCounts
from cli.local.view import Work, changes, line, table

SCALING = ModelScaling(replicas=3, metric=3, active=True, workers=PoolCounts(running=3, busy=2))
# Four sub-tasks still to run, two of them on the queue or running: the others wait for their
# stage (the steps after a chord), not for a worker; one of the two waits for a worker.
WORK = Work(analyses=1, pending=4, queued_or_running=2, queued=1)


def test_a_line_tells_waiting_for_a_stage_from_waiting_for_a_worker() -> None:
    assert line("M-1-1", SCALING, WORK) == (
        "M-1-1: analyses 1, sub-tasks to run 4 (2 queued or running, 1 waiting for a worker), "
        "desired 3, replicas 3, workers 3 (2 busy, 0 warming, 0 stopping)"
    )


def test_the_table_shows_the_queued_or_running_column() -> None:
    console = Console(file=io.StringIO(), width=200, record=True)
    console.print(table({"M-1-1": SCALING}, {"M-1-1": WORK}))
    lines = console.export_text().splitlines()
    rows = [[cell.strip() for cell in re.split("[│┃]", row)[1:-1]] for row in lines]
    header = next(row for row in rows if row and row[0] == "model")
    model = next(row for row in rows if row and row[0] == "M-1-1")
    shown = dict(zip(header, model, strict=True))
    columns = ("sub-tasks to run", "queued or running", "waiting for a worker", "desired")
    assert tuple(shown[column] for column in columns) == ("4", "2", "1", "3")


def test_only_changed_lines_are_said() -> None:
    said: list[str] = []
    shown = changes({}, {"M-1-1": SCALING}, {"M-1-1": WORK}, said.append)
    changes(shown, {"M-1-1": SCALING}, {"M-1-1": WORK}, said.append)
    assert said == [line("M-1-1", SCALING, WORK)]


class MovingStack:
    """A stack whose work ends while the view watches it: at each read of the stand-in, the
    scaler's answer follows the work of that moment (a queued chunk, then none)."""

    api_url = "http://api"
    settings = SimpleNamespace(discovery_seconds=60.0)

    def __init__(self) -> None:
        self.moment = 0
        self.keda = SimpleNamespace(scaling=self.scaling)

    def queued(self) -> int:
        return 1 if self.moment < 3 else 0

    def scaling(self) -> dict[str, ModelScaling]:
        self.moment += 1
        return {
            "M-1-1": ModelScaling(replicas=1, metric=self.queued(), workers=PoolCounts(running=1))
        }

    def work(self, api_url: str) -> dict[str, Work]:
        queued = self.queued()
        return {"M-1-1": Work(analyses=1, pending=queued, queued_or_running=queued, queued=queued)}

    def discover(self) -> None:
        pass

    def notes(self, now: float) -> list[str]:
        return []

    def tend(self, now: float) -> None:
        pass


def test_a_line_pairs_the_scalers_answer_with_work_read_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stack = MovingStack()
    monkeypatch.setattr(view, "read_work", stack.work)
    monkeypatch.setattr(run, "REFRESH_SECONDS", 0.0)
    output = io.StringIO()
    ended = run.watch(
        stack, threading.Event(), Console(file=output), lambda _: stack.moment >= 6, None
    )
    said = output.getvalue().splitlines()
    assert ended == 0
    assert any("desired 0" in text for text in said), said
    # Never a chunk shown waiting beside the answer that let its worker go.
    assert not [text for text in said if "desired 0" in text and "(1 queued" in text], said
