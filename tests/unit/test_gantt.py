"""The Gantt chart: a PNG of a known size, drawn headless, with the colours it promises."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.image import imread

from cli.subtasks.gantt import COLOURS, ERROR_COLOUR, draw_gantt, figure_pixels, row_labels
from cli.subtasks.timeline import Kind, Timeline, build_timeline, parse_sub_tasks
from worker.stages import losses

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
QUEUE = "OasisLMF-PiWind-1"
W1, W2 = f"{QUEUE}@worker-0:41", f"{QUEUE}@worker-1:38"


def at(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sub_task(
    id: int,
    slug: str,
    name: str,
    worker: str | None,
    start: float | None,
    end: float | None,
    status: str = "COMPLETED",
) -> dict[str, Any]:
    return {
        "id": id,
        "task_id": f"t{id}",
        "status": status,
        "queue_name": QUEUE,
        "name": name,
        "slug": slug,
        "analysis": 7,
        "pending_time": at(0),
        "queue_time": at(0),
        "start_time": at(start),
        "end_time": at(end),
        "retry_count": 0,
        "worker": worker,
        "output_log": None,
        "error_log": None,
        "retry_log": None,
    }


def loss_stage() -> list[dict[str, Any]]:
    """A made-up losses stage: two steps on worker 0, ten chunks over both, three on worker 1."""
    plan = losses(10)
    tasks: list[dict[str, Any]] = []
    clock = 0.5
    for spec in plan.before:
        tasks.append(sub_task(len(tasks) + 1, spec.slug, spec.name, W1, clock, clock + 1.5))
        clock += 1.7
    free = {W1: clock, W2: clock}
    for spec in plan.chunks:
        worker = min(free, key=lambda w: free[w])
        length = 5.0 + spec.chunk % 3  # type: ignore[operator]
        tasks.append(
            sub_task(
                len(tasks) + 1, spec.slug, spec.name, worker, free[worker], free[worker] + length
            )
        )
        free[worker] += length + 0.3
    clock = max(free.values())
    for spec in plan.after:
        tasks.append(sub_task(len(tasks) + 1, spec.slug, spec.name, W2, clock, clock + 1.2))
        clock += 1.4
    return tasks


def chart(tasks: list[dict[str, Any]], path: Path, now: float = 600) -> Timeline:
    timeline = build_timeline(parse_sub_tasks(tasks), now=T0 + timedelta(seconds=now))
    draw_gantt(timeline, path, analysis=7)
    return timeline


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk comes first
    return width, height


def share_of(path: Path, colour: str) -> float:
    """The share of the image's pixels within a small distance of `colour`."""
    pixels = imread(path)[..., :3]
    distance = np.abs(pixels - np.array(to_rgb(colour))).max(axis=-1)
    return float((distance < 0.02).mean())


def test_two_workers_ten_chunks(tmp_path: Path) -> None:
    path = tmp_path / "gantt.png"
    timeline = chart(loss_stage(), path)
    assert [row.label for row in timeline.rows] == [W1, W2]
    assert png_size(path) == (1200, 320) == figure_pixels(2)
    # The bars are drawn, in the colours the legend gives them.
    assert share_of(path, COLOURS[Kind.LOSS_CHUNK]) > 0.10
    assert share_of(path, COLOURS[Kind.LOSSES_STEP]) > 0.005
    assert share_of(path, ERROR_COLOUR) == 0


def test_an_error_and_what_it_cancelled(tmp_path: Path) -> None:
    tasks = loss_stage()
    tasks[6]["status"] = "ERROR"  # chunk 5
    tasks[-4].update(status="CANCELLED", end_time=None)  # chunk 10, cut short
    for cancelled in tasks[-3:]:  # the steps after the chunks, never started
        cancelled.update(status="CANCELLED", start_time=None, end_time=None, worker=None)
    path = tmp_path / "gantt.png"
    timeline = chart(tasks, path)
    assert [row.label for row in timeline.rows] == [W1, W2, "CANCELLED"]
    assert png_size(path) == (1200, 350) == figure_pixels(3)
    assert share_of(path, ERROR_COLOUR) > 0.001


def test_still_running(tmp_path: Path) -> None:
    tasks = loss_stage()[:9]  # up to chunk 7
    tasks[-1].update(status="STARTED", end_time=None)
    tasks[-2].update(status="STARTED", end_time=None)
    queued = [
        sub_task(len(tasks) + i, spec.slug, spec.name, None, None, None, "QUEUED")
        for i, spec in enumerate(losses(10).sub_tasks[9:], start=1)
    ]
    path = tmp_path / "gantt.png"
    timeline = chart(tasks + queued, path, now=30)
    assert [row.label for row in timeline.rows] == [W1, W2, "QUEUED"]
    assert timeline.horizon == 30
    assert png_size(path) == figure_pixels(3)


@pytest.mark.parametrize(
    ("rows", "pixels"),
    [(1, (1200, 320)), (2, (1200, 320)), (3, (1200, 350)), (10, (1200, 700))],
)
def test_height_grows_with_the_rows(rows: int, pixels: tuple[int, int]) -> None:
    assert figure_pixels(rows) == pixels


def test_row_labels_drop_the_shared_queue_and_count_status_rows(tmp_path: Path) -> None:
    tasks = loss_stage()
    tasks.append(sub_task(98, "generate-losses-chunk-11", "", None, None, None, "QUEUED"))
    tasks.append(sub_task(99, "generate-losses-chunk-12", "", None, None, None, "QUEUED"))
    timeline = build_timeline(parse_sub_tasks(tasks), now=T0 + timedelta(seconds=99))
    assert row_labels(timeline) == ["worker-0:41", "worker-1:38", "QUEUED (2)"]


def test_nothing_timed_yet(tmp_path: Path) -> None:
    path = tmp_path / "gantt.png"
    pending = sub_task(1, "prepare-losses-generation-params", "", None, None, None, "PENDING")
    pending["queue_time"] = None
    assert chart([pending], path).origin is None
    assert png_size(path) == figure_pixels(1)


def test_dollars_in_names_are_not_mathtext(tmp_path: Path) -> None:
    tasks = loss_stage()
    for t in tasks:
        t["worker"] = t["worker"].replace("worker-", "$\\nope{$-")  # broken as mathtext
    path = tmp_path / "gantt.png"
    chart(tasks, path)
    assert png_size(path) == figure_pixels(2)


def test_an_unwritable_path_is_an_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        chart(loss_stage(), tmp_path / "missing" / "gantt.png")


def test_drawn_headless_without_pyplot(tmp_path: Path) -> None:
    # A GUI backend asked for and no display: the chart must not care, and pyplot (global
    # state, a GUI event loop) must not be loaded at all.
    path = tmp_path / "gantt.png"
    probe = (
        "import sys; from pathlib import Path; "
        "from tests.unit.test_gantt import chart, loss_stage; "
        f"chart(loss_stage(), Path({str(path)!r})); "
        "print('matplotlib.pyplot' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env={**env, "MPLBACKEND": "TkAgg"},
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "False"
    assert png_size(path) == figure_pixels(2)
