"""The scaler's reader process: reads in a child, only changes sent back, a dead child replaced."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from scaler.reader import ReaderProcess
from scaler.samples import Problem
from scaler.settings import ScalerSettings
from scaler.sources import SourceError
from tests.support.published import Publisher, publisher

pytestmark = pytest.mark.integration
DYNAMIC = {"scaling_strategy": "DYNAMIC_TASKS", "chunks_per_worker": 2, "worker_count_max": 5}


@pytest.fixture
def published() -> Iterator[Publisher]:
    with publisher({"A-a-1": {**DYNAMIC, "pending": 4}, "B-b-1": {**DYNAMIC}}) as served:
        yield served


@pytest.fixture
def reader(published: Publisher) -> Iterator[tuple[ReaderProcess, list[str], list[Problem]]]:
    failed: list[str] = []
    problems: list[Problem] = []
    settings = ScalerSettings(scrape_targets=[published.url], interval_seconds=1.0)
    source = ReaderProcess(settings, on_problems=problems.extend, on_target_error=failed.append)
    yield source, failed, problems
    source.close()


def test_a_read_with_no_change_is_the_same_mapping_and_a_change_is_applied(
    published: Publisher, reader: tuple[ReaderProcess, list[str], list[Problem]]
) -> None:
    source, _, _ = reader
    first = source()
    assert {model: state.desired for model, state in first.items()} == {"A-a-1": 2, "B-b-1": 0}
    assert source() is first, "an unchanged read must not rebuild the states"
    published.publish({"A-a-1": {**DYNAMIC, "pending": 4}, "B-b-1": {**DYNAMIC, "pending": 9}})
    second = source()
    assert second is not first
    assert second["A-a-1"] is first["A-a-1"], "an unchanged model keeps its state object"
    assert second["B-b-1"].desired == 5
    published.publish({"A-a-1": {**DYNAMIC, "pending": 4}})
    assert set(source()) == {"A-a-1"}


def test_problems_and_failed_targets_come_back_to_the_parent(
    published: Publisher, reader: tuple[ReaderProcess, list[str], list[Problem]]
) -> None:
    source, failed, problems = reader
    published.publish({"A-a-1": {**DYNAMIC, "worker_count_min": 9}})  # min above max
    assert source()["A-a-1"].configuration.worker_count_max == 10  # the defaults
    assert [p.model for p in problems] == ["A-a-1"]
    published.down()
    with pytest.raises(SourceError, match="127.0.0.1"):
        source()
    assert failed == [published.url]


def test_a_dead_reader_fails_one_read_and_is_replaced(
    reader: tuple[ReaderProcess, list[str], list[Problem]],
) -> None:
    source, _, _ = reader
    assert set(source()) == {"A-a-1", "B-b-1"}
    os.kill(source._process.pid, signal.SIGKILL)  # noqa: SLF001 - the child is the subject
    with pytest.raises(SourceError, match="reader process"):
        source()
    assert set(source()) == {"A-a-1", "B-b-1"}, "the new reader reads again"
