"""The sub-task timeline: kinds, ordering, rows per worker, spans, summary figures."""

from __future__ import annotations

import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from cli.subtasks.timeline import (
    Kind,
    Row,
    Span,
    Summary,
    build_timeline,
    classify,
    format_seconds,
    parse_sub_tasks,
    shared_queue,
    summary_line,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
W1 = "OasisLMF-PiWind-1@host-a:11"
W2 = "OasisLMF-PiWind-1@host-b:22"


def at(seconds: float | None) -> str | None:
    """T0 + seconds in the API's format."""
    if seconds is None:
        return None
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def task(
    id: int,
    slug: str = "generate-losses-chunk-1",
    status: str = "COMPLETED",
    *,
    q: float | None = 0.0,
    s: float | None = None,
    e: float | None = None,
    worker: str | None = None,
    name: str = "",
    retries: int = 0,
) -> dict[str, Any]:
    """A sub-task as `GET /v2/analyses/{id}/sub_task_list/` serves it; times in seconds."""
    return {
        "id": id,
        "task_id": f"task-{id}",
        "status": status,
        "queue_name": "OasisLMF-PiWind-1",
        "name": name,
        "slug": slug,
        "analysis": 1,
        "pending_time": at(q),
        "queue_time": at(q),
        "start_time": at(s),
        "end_time": at(e),
        "retry_count": retries,
        "worker": worker,
        "output_log": None,
        "error_log": None,
        "retry_log": None,
    }


def timeline(*tasks: dict[str, Any], now: float = 1000.0) -> Any:
    return build_timeline(parse_sub_tasks(list(tasks)), now=T0 + timedelta(seconds=now))


# --- kinds ------------------------------------------------------------------------------------

KINDS = [
    ("prepare-keys-file-1", "Lookup keys 1 of 4", Kind.LOOKUP_CHUNK, 1),
    ("prepare-keys-file-12", "", Kind.LOOKUP_CHUNK, 12),
    ("generate-losses-chunk-3", "Generate losses chunk 3 of 10", Kind.LOSS_CHUNK, 3),
    ("generate-losses-output", "Generate losses output", Kind.LOSSES_STEP, None),
    ("prepare-input-generation-params", "", Kind.INPUTS_STEP, None),
    ("collect-keys", "Collect keys", Kind.INPUTS_STEP, None),
    ("prepare-losses-generation-directory", "", Kind.LOSSES_STEP, None),
    ("cleanup", "Clean up input generation", Kind.INPUTS_STEP, None),
    ("cleanup", "Clean up losses generation", Kind.LOSSES_STEP, None),
    ("cleanup", "", Kind.OTHER, None),
    ("prepare-keys-file", "", Kind.OTHER, None),
    ("prepare-keys-file-x", "", Kind.OTHER, None),
    ("something-else", "", Kind.OTHER, None),
]


@pytest.mark.parametrize(
    ("slug", "name", "kind", "chunk"), KINDS, ids=[f"{k[0]}|{k[1]}" for k in KINDS]
)
def test_kind_from_slug_and_name(slug: str, name: str, kind: Kind, chunk: int | None) -> None:
    assert classify(slug, name) == (kind, chunk)


# --- ordering and rows ------------------------------------------------------------------------

ORDERS = [
    (
        "by start time",
        [task(1, s=5, e=6, worker=W1), task(2, s=1, e=2, worker=W1), task(3, s=3, e=4, worker=W2)],
        [2, 3, 1],
    ),
    (
        "same start: by queue time, then id",
        [task(3, q=1, s=5, e=6), task(2, q=0, s=5, e=6), task(1, q=1, s=5, e=6)],
        [2, 1, 3],
    ),
    (
        "never started last, by queue time",
        [task(1, "a", "QUEUED", q=4), task(2, "b", "QUEUED", q=2), task(3, s=9, e=10)],
        [3, 2, 1],
    ),
    (
        "no times at all: by id",
        [task(2, "a", "PENDING", q=None), task(1, "b", "PENDING", q=None)],
        [1, 2],
    ),
]


@pytest.mark.parametrize(("tasks", "ids"), [o[1:] for o in ORDERS], ids=[o[0] for o in ORDERS])
def test_bars_are_ordered(tasks: list[dict[str, Any]], ids: list[int]) -> None:
    assert [bar.id for bar in timeline(*tasks).bars] == ids


ROWS = [
    (
        "one row per worker, by first start",
        [task(1, s=4, e=5, worker=W1), task(2, s=1, e=2, worker=W2), task(3, s=6, e=7, worker=W1)],
        [Row(W2, True), Row(W1, True)],
        [1, 0, 1],
    ),
    (
        "no worker: a row named after the status, after the workers, in a fixed order",
        [
            task(1, "a", "CANCELLED", q=0),
            task(2, "b", "QUEUED", q=0),
            task(3, s=1, e=2, worker=W1),
            task(4, "c", "QUEUED", q=1),
        ],
        [Row(W1, True), Row("QUEUED", False), Row("CANCELLED", False)],
        [2, 1, 0, 1],
    ),
    (
        "back in the queue for a retry: on the QUEUED row, not its last worker's",
        [task(1, "a", "QUEUED", q=0, s=1, worker=W1, retries=1), task(2, s=1, e=2, worker=W2)],
        [Row(W2, True), Row("QUEUED", False)],
        [1, 0],
    ),
    (
        "unknown statuses after the known ones, alphabetically",
        [task(1, "a", "ZAPPED"), task(2, "b", "REVOKED"), task(3, "c", "ERROR")],
        [Row("ERROR", False), Row("REVOKED", False), Row("ZAPPED", False)],
        [2, 1, 0],
    ),
]


@pytest.mark.parametrize(
    ("tasks", "rows", "bar_rows"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_rows(tasks: list[dict[str, Any]], rows: list[Row], bar_rows: list[int]) -> None:
    result = timeline(*tasks)
    assert list(result.rows) == rows
    by_id = {bar.id: bar.row for bar in result.bars}
    assert [by_id[t["id"]] for t in tasks] == bar_rows


# --- spans: queue wait and run ----------------------------------------------------------------

# (id, the sub-task, the other sub-tasks, now, wait, run): seconds since the first queue time.
SPANS: list[tuple[str, dict[str, Any], list[dict[str, Any]], float, Span | None, Span | None]] = [
    ("completed", task(1, q=0, s=2, e=10, worker=W1), [], 99, Span(0, 2), Span(2, 10)),
    (
        "error: a run like any other",
        task(1, status="ERROR", q=0, s=3, e=4, worker=W1),
        [],
        99,
        Span(0, 3),
        Span(3, 4),
    ),
    (
        "running: the run goes on until now",
        task(1, status="STARTED", q=0, s=2, worker=W1),
        [],
        50,
        Span(0, 2),
        Span(2, 50, open=True),
    ),
    (
        "queued: the wait goes on until now",
        task(1, status="QUEUED", q=5),
        [task(2, q=0, s=1, e=3, worker=W1)],
        50,
        Span(5, 50, open=True),
        None,
    ),
    (
        "queued again for a retry: the earlier attempt's start is no run",
        task(1, status="QUEUED", q=0, s=3, worker=W1, retries=1),
        [],
        20,
        Span(0, 20, open=True),
        None,
    ),
    (
        "cancelled before it started: waited until the last recorded time, not until now",
        task(1, status="CANCELLED", q=0),
        [task(2, q=0, s=1, e=30, worker=W1)],
        500,
        Span(0, 30, open=True),
        None,
    ),
    (
        "cancelled while running: ran until the last recorded time",
        task(1, status="CANCELLED", q=0, s=10, worker=W1),
        [task(2, q=0, s=1, e=30, worker=W2)],
        500,
        Span(0, 10),
        Span(10, 30, open=True),
    ),
    (
        "cancelled while others still run: waited until the last recorded time, not until now",
        task(1, status="CANCELLED", q=0),
        [task(2, status="STARTED", q=0, s=8, worker=W1)],
        500,
        Span(0, 8, open=True),
        None,
    ),
    (
        "no queue time: no wait",
        task(1, q=None, s=4, e=6, worker=W1),
        [task(2, q=0, s=1, e=3, worker=W1)],
        99,
        None,
        Span(4, 6),
    ),
    (
        "started before its queue time (clocks differ): a wait of zero",
        task(1, q=5, s=4, e=6, worker=W1),
        [task(2, q=0, s=1, e=3, worker=W1)],
        99,
        Span(4, 4),
        Span(4, 6),
    ),
    (
        "ended before it started (clocks differ): a run of zero",
        task(1, q=0, s=4, e=3, worker=W1),
        [],
        99,
        Span(0, 4),
        Span(4, 4),
    ),
    ("no times at all", task(1, "a", "PENDING", q=None), [], 99, None, None),
    (
        "a clock behind the workers': running bars are not cut short",
        task(1, status="STARTED", q=0, s=2, worker=W1),
        [task(2, q=0, s=1, e=40, worker=W2)],
        10,
        Span(0, 2),
        Span(2, 40, open=True),
    ),
]


@pytest.mark.parametrize(
    ("subject", "others", "now", "wait", "run"), [c[1:] for c in SPANS], ids=[c[0] for c in SPANS]
)
def test_spans(
    subject: dict[str, Any],
    others: list[dict[str, Any]],
    now: float,
    wait: Span | None,
    run: Span | None,
) -> None:
    bar = next(b for b in timeline(subject, *others, now=now).bars if b.id == subject["id"])
    assert (bar.wait, bar.run) == (wait, run)


def test_origin_is_the_first_queue_time_else_the_first_start() -> None:
    assert timeline(task(1, q=7, s=9, e=10), task(2, q=3, s=4, e=5)).origin == T0 + timedelta(
        seconds=3
    )
    assert timeline(task(1, q=None, s=9, e=10)).origin == T0 + timedelta(seconds=9)
    assert timeline(task(1, q=None)).origin is None


# --- summary ----------------------------------------------------------------------------------

SUMMARIES = [
    (
        "two workers, everything done",
        [
            task(1, q=0, s=1, e=11, worker=W1),
            task(2, q=0, s=2, e=7, worker=W2),
            task(3, q=0, s=11, e=15, worker=W1),
        ],
        Summary(3, 2, 15.0, 19.0, 14 / 3, 0, (("COMPLETED", 3),)),
    ),
    (
        "still running: the wall time runs until now; open waits are not queue waits",
        [
            task(1, q=0, s=2, e=6, worker=W1),
            task(2, status="STARTED", q=0, s=6, worker=W1),
            task(3, status="QUEUED", q=0),
        ],
        Summary(3, 1, 100.0, 4.0 + 94.0, 4.0, 2, (("COMPLETED", 1), ("STARTED", 1), ("QUEUED", 1))),
    ),
    (
        "an error and what it cancelled",
        [
            task(1, status="ERROR", q=0, s=1, e=5, worker=W1),
            task(2, status="CANCELLED", q=0),
            task(3, status="CANCELLED", q=0),
        ],
        Summary(3, 1, 5.0, 4.0, 1.0, 0, (("CANCELLED", 2), ("ERROR", 1))),
    ),
    (
        "nothing has a time yet",
        [task(1, "a", "PENDING", q=None)],
        Summary(1, 0, None, 0.0, None, 1, (("PENDING", 1),)),
    ),
    (
        "a retried sub-task's last worker counts as used",
        [task(1, "a", "QUEUED", q=0, s=1, worker=W1, retries=1), task(2, q=0, s=1, e=2, worker=W2)],
        Summary(2, 2, 100.0, 1.0, 1.0, 1, (("QUEUED", 1), ("COMPLETED", 1))),
    ),
]


@pytest.mark.parametrize(
    ("tasks", "summary"), [c[1:] for c in SUMMARIES], ids=[c[0] for c in SUMMARIES]
)
def test_summary(tasks: list[dict[str, Any]], summary: Summary) -> None:
    assert timeline(*tasks, now=100).summary == pytest.approx(summary)


def test_summary_line() -> None:
    summary = Summary(24, 2, 82.1, 122.0, 18.6, 0, (("COMPLETED", 24),))
    assert summary_line(summary) == (
        "24 sub-tasks, 2 workers used, wall time 1 min 22 s, total run time 2 min 02 s, "
        "mean queue wait 18.6 s"
    )
    running = Summary(1, 1, 5.0, 3.0, None, 1, (("STARTED", 1),))
    assert summary_line(running) == (
        "1 sub-task, 1 worker used, wall time 5.0 s, total run time 3.0 s, "
        "mean queue wait -, 1 still queued or running"
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0.0, "0.0 s"),
        (4.25, "4.2 s"),
        (59.94, "59.9 s"),
        (59.96, "1 min 00 s"),
        (125.0, "2 min 05 s"),
        (3599.4, "59 min 59 s"),
        (3600.0, "1 h 00 min"),
        (3725.0, "1 h 02 min"),
    ],
)
def test_format_seconds(seconds: float | None, text: str) -> None:
    assert format_seconds(seconds) == text


@pytest.mark.parametrize(
    ("workers", "queue"),
    [
        ([W1, W2], "OasisLMF-PiWind-1@"),
        ([W1, "Other-Model-1@host-a:1"], ""),
        ([W1, "host-c:33"], ""),
        (["host-a:1"], ""),
        ([], ""),
        (["OasisLMF-PiWind-1.41@h:42", "OasisLMF-PiWind-1.50@h:51"], "OasisLMF-PiWind-1."),
        (["Acme-Cat-2.0.41@h:42", "Acme-Cat-2.0.50@h:51"], "Acme-Cat-2.0."),
        (["Acme-Cat-2.41@h:42", "Other-Cat-2.41@h:42"], ""),
    ],
    ids=[
        "one queue",
        "two queues",
        "one without a queue",
        "no queue",
        "no workers",
        "a node per process",
        "a dotted version",
        "two queues of nodes",
    ],
)
def test_shared_queue(workers: list[str], queue: str) -> None:
    assert shared_queue(workers) == queue


# --- parsing ----------------------------------------------------------------------------------


def test_parse_takes_utc_times_and_ignores_other_fields() -> None:
    naive = task(1, s=2, e=3) | {"start_time": "2024-05-01T12:00:02", "extra": "ignored"}
    (record,) = parse_sub_tasks([naive])
    assert record.queue_time == T0
    assert record.start_time == T0 + timedelta(seconds=2)
    assert record.start_time.tzinfo is not None


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ([task(1) | {"start_time": "yesterday"}], "start_time"),
        ([{k: v for k, v in task(1).items() if k != "slug"}], "slug"),
        ({"detail": "not a list"}, ""),
    ],
    ids=["bad time", "missing slug", "not a list"],
)
def test_parse_names_the_bad_field(data: Any, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_sub_tasks(data)
    assert field in str(caught.value)


def test_the_core_loads_no_plotting_network_or_database_library() -> None:
    forbidden = ["matplotlib", "requests", "rich", "sqlalchemy", "flask", "celery"]
    probe = (
        "import sys, cli.subtasks.timeline; "
        f"print(sorted(m for m in {forbidden!r} if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"


# --- properties -------------------------------------------------------------------------------

STATUSES = ["PENDING", "QUEUED", "STARTED", "COMPLETED", "ERROR", "CANCELLED"]


@st.composite
def sub_task_lists(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Sub-tasks whose times are consistent (queue <= start <= end), with any piece missing."""
    count = draw(st.integers(min_value=1, max_value=25))
    tasks = []
    for i in range(1, count + 1):
        q = draw(st.none() | st.integers(0, 100))
        s = draw(st.none() | st.integers(q or 0, 200))
        e = None if s is None else draw(st.none() | st.integers(s, 300))
        worker = draw(st.none() | st.sampled_from([W1, W2, "host-c:3"]))
        tasks.append(
            task(i, f"slug-{i}", draw(st.sampled_from(STATUSES)), q=q, s=s, e=e, worker=worker)
        )
    return tasks


@given(sub_task_lists(), st.integers(0, 400))
def test_every_sub_task_is_one_bar_on_a_row_within_the_horizon(
    tasks: list[dict[str, Any]], now: int
) -> None:
    result = timeline(*tasks, now=now)
    # Before 0 only when something started before the first queue time, without one of its own.
    times = [
        (t - T0).total_seconds()
        for r in parse_sub_tasks(tasks)
        for t in (r.queue_time, r.start_time, r.end_time)
        if t
    ]
    origin = 0.0 if result.origin is None else (result.origin - T0).total_seconds()
    earliest = min([origin, *times]) - origin
    assert sorted(b.id for b in result.bars) == [t["id"] for t in tasks]
    assert len(set(result.rows)) == len(result.rows)
    assert {b.row for b in result.bars} == set(range(len(result.rows)))
    workers_first = [row.is_worker for row in result.rows]
    assert workers_first == sorted(workers_first, reverse=True)
    for bar in result.bars:
        spans = [s for s in (bar.wait, bar.run) if s]
        assert all(earliest <= s.start <= s.end <= result.horizon for s in spans)
        if bar.wait and bar.run:
            assert bar.wait.end == bar.run.start  # the wait leads into the run
        row = result.rows[bar.row]
        assert row.label == (bar.worker if row.is_worker else bar.status)
        if bar.run and not bar.run.open:
            assert row.is_worker == (bar.worker is not None)  # what ran is on its worker's row
    summary = result.summary
    assert summary.sub_tasks == len(tasks)
    assert summary.run_seconds == pytest.approx(sum(b.run.seconds for b in result.bars if b.run))
    assert sum(n for _, n in summary.statuses) == len(tasks)


@given(sub_task_lists(), st.randoms())
def test_the_order_of_the_input_does_not_matter(
    tasks: list[dict[str, Any]], rng: random.Random
) -> None:
    shuffled = list(tasks)
    rng.shuffle(shuffled)
    assert timeline(*shuffled) == timeline(*tasks)
