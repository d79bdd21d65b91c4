"""The exporter's core: an OasisPlatform queue-status message -> each model queue's work.

Tables over the payloads captured from a running OasisPlatform 2.5.6 (tests/data/oasisplatform)
and hand-made ones; then properties: any whole message converts, a cut one is refused.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.exporter.snapshot import IDLE, QueueWork, SnapshotError, parse, snapshot

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "oasisplatform"
PIWIND = "oasislmf-piwind-1-v2"


def sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text())


def queue(name: str, **counts: int) -> dict[str, Any]:
    fields = ("pending_count", "queued_count", "running_count", "queue_message_count")
    return {
        "name": name,
        **{field: counts.get(field, 0) for field in fields},
        "worker_count": counts.get("worker_count", 0),
        "models": [],
    }


def analysis(
    analysis_id: int,
    queues: list[str],
    *,
    in_queue: int = 1,
    status: str = "RUN_STARTED",
    priority: int | None = 4,
) -> dict[str, Any]:
    return {
        "analysis": {
            "name": f"a{analysis_id}",
            "id": analysis_id,
            "portfolio": 1,
            "model": 1,
            "status": status,
            "priority": priority,
            "analysis_chunks": None,
            "lookup_chunks": None,
            "sub_task_count": in_queue,
            "queue_names": queues,
            "status_count": {"TOTAL_IN_QUEUE": in_queue, "TOTAL": in_queue, "PENDING": in_queue},
        },
        "updated_tasks": [],
    }


def message(*entries: tuple[dict[str, Any], list[dict[str, Any]]]) -> dict[str, Any]:
    return {
        "time": "2026-12-05T18:26:34.670172Z",
        "type": "queue_status.updated",
        "status": "SUCCESS",
        "content": [{"queue": q, "analyses": a} for q, a in entries],
    }


CAPTURED = [
    pytest.param("ws_initial_on_connect_idle.json", {}, id="on connect, idle: no model queue"),
    pytest.param(
        "ws_push_after_create_statuses.json",
        # Listed under celery-v2 only, but its queue_names name the model's queue.
        {
            PIWIND: QueueWork(
                analyses=1, pending=0, priorities={4: 1}, recorded=9, queued_or_running=0, queued=0
            )
        },
        id="push after the sub-tasks were created",
    ),
    pytest.param(
        "ws_push_beat_digest.json",
        {
            PIWIND: QueueWork(
                analyses=1,
                pending=8,
                messages=1,
                workers=0,
                priorities={4: 1},
                recorded=9,
                queued_or_running=8,
                queued=8,
            )
        },
        id="beat digest",
    ),
    pytest.param(
        "queue-status_generate_inputs_queued_no_worker.json",
        {
            PIWIND: QueueWork(
                analyses=1,
                pending=8,
                messages=1,
                workers=0,
                priorities={4: 1},
                recorded=9,
                queued_or_running=8,
                queued=8,
            )
        },
        id="REST queue status, inputs queued, no worker",
    ),
]


@pytest.mark.parametrize(("name", "expected"), CAPTURED)
def test_captured_payloads(name: str, expected: dict[str, QueueWork]) -> None:
    assert dict(snapshot(sample(name)).queues) == expected


def test_every_line_of_the_captured_websocket_stream() -> None:
    lines = (SAMPLES / "ws_messages_with_beat.jsonl").read_text().splitlines()
    works = [parse(line).work("OasisLMF-PiWind-1-v2") for line in lines]
    assert [(w.analyses, w.pending) for w in works] == [(1, 8), (1, 8)]


HAND_MADE = [
    pytest.param(
        message(
            (queue("M-1", pending_count=3), [analysis(1, ["M-1", "celery-v2"])]),
            (queue("celery-v2", pending_count=1), [analysis(1, ["M-1", "celery-v2"])]),
        ),
        {
            "m-1": QueueWork(
                analyses=1, pending=3, priorities={4: 1}, recorded=3, queued_or_running=3, queued=3
            )
        },
        id="two queues list one analysis: counted once",
    ),
    pytest.param(
        message(
            (queue("M-1", pending_count=2), [analysis(1, ["M-1"]), analysis(2, ["M-1"])]),
            (queue("N-1", running_count=4), [analysis(2, ["N-1", "M-1"], priority=9)]),
        ),
        {
            "m-1": QueueWork(
                analyses=2, pending=2, priorities={4: 2}, recorded=2, queued_or_running=2, queued=2
            ),
            # Running sub-tasks are on the queue or running, and none waits for a worker.
            "n-1": QueueWork(
                analyses=1, pending=4, priorities={4: 1}, recorded=4, queued_or_running=4, queued=0
            ),
        },
        id="an analysis on two model queues counts on both, first listing wins",
    ),
    pytest.param(
        message(
            (
                queue("M-1", queue_message_count=1),
                [analysis(1, [], in_queue=0, status="INPUTS_GENERATION_QUEUED", priority=7)],
            )
        ),
        {
            "m-1": QueueWork(
                analyses=1,
                pending=1,
                messages=1,
                priorities={7: 1},
                recorded=1,
                queued_or_running=1,
                queued=1,
            )
        },
        id="an analysis with no sub-tasks yet, queued: a main task",
    ),
    pytest.param(
        message((queue("M-1"), [analysis(1, ["M-1"], in_queue=0, status="READY")])),
        {"m-1": IDLE},
        id="an analysis ready with nothing in queue: no work",
    ),
    pytest.param(
        message((queue("M-1", queue_message_count=2, worker_count=3), [])),
        {
            "m-1": QueueWork(
                analyses=1,
                pending=2,
                messages=2,
                workers=3,
                priorities={4: 1},
                recorded=2,
                queued_or_running=2,
                queued=2,
            )
        },
        id="a queue with messages and no analysis: one stand-in analysis",
    ),
    pytest.param(
        message((queue("M-1", running_count=1), [])),
        {
            "m-1": QueueWork(
                analyses=1, pending=1, priorities={4: 1}, recorded=1, queued_or_running=1, queued=0
            )
        },
        id="a queue with a running sub-task and no analysis: work too",
    ),
    pytest.param(
        message((queue("M-1", worker_count=2), [])),
        {"m-1": QueueWork(workers=2)},
        id="a queue with workers only: idle",
    ),
    pytest.param(
        message(
            (queue("celery", queue_message_count=5), []),
            (queue("task-controller", pending_count=2), [analysis(1, ["task-controller"])]),
        ),
        {},
        id="system queues are no model's",
    ),
    pytest.param(
        message((queue("M-1", pending_count=1), [analysis(1, ["M-1"], priority=None)])),
        {
            "m-1": QueueWork(
                analyses=1, pending=1, priorities={4: 1}, recorded=1, queued_or_running=1, queued=1
            )
        },
        id="no priority: the default 4",
    ),
    pytest.param(
        message((queue("M-1", pending_count=1), [analysis(1, ["M-1"], priority=42)])),
        {
            "m-1": QueueWork(
                analyses=1, pending=1, priorities={4: 1}, recorded=1, queued_or_running=1, queued=1
            )
        },
        id="a priority outside 1-10: the default 4",
    ),
    pytest.param(
        message(
            (
                queue("M-1", pending_count=1, queue_message_count=6),
                [analysis(1, ["M-1"], priority=2), analysis(2, ["M-1"], priority=10)],
            )
        ),
        {
            "m-1": QueueWork(
                analyses=2,
                pending=6,
                messages=6,
                priorities={2: 1, 10: 1},
                recorded=6,
                queued_or_running=6,
                queued=6,
            )
        },
        id="more broker messages than sub-task rows: the messages count",
    ),
    pytest.param(
        {
            **message((queue("M-1", pending_count=1), [analysis(1, ["M-1"])])),
            "new_top_level": {"x": 1},
            "content": [
                {
                    "queue": {**queue("M-1", pending_count=1), "new_count": 9},
                    "analyses": [analysis(1, ["M-1"])],
                    "extra": [],
                }
            ],
        },
        {
            "m-1": QueueWork(
                analyses=1, pending=1, priorities={4: 1}, recorded=1, queued_or_running=1, queued=1
            )
        },
        id="unknown fields are ignored",
    ),
]


@pytest.mark.parametrize(("body", "expected"), HAND_MADE)
def test_hand_made_messages(body: dict[str, Any], expected: dict[str, QueueWork]) -> None:
    assert dict(snapshot(body).queues) == expected


def test_names_are_compared_lower_cased() -> None:
    taken = snapshot(message((queue("OasisLMF-PiWind-1-v2", pending_count=2), [])))
    assert taken.work("OASISLMF-PIWIND-1-V2").pending == 2
    assert taken.work("Other-1-v2") == IDLE


def whole() -> dict[str, Any]:
    return sample("queue-status_generate_inputs_queued_no_worker.json")  # type: ignore[no-any-return]


def cut(path: list[Any]) -> dict[str, Any]:
    body = copy.deepcopy(whole())
    *parents, last = path
    target = body
    for part in parents:
        target = target[part]
    del target[last]
    return body


def replaced(path: list[Any], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(whole())
    *parents, last = path
    target = body
    for part in parents:
        target = target[part]
    target[last] = value
    return body


PARTIAL = [
    pytest.param(b"\xff\xfe", "not JSON", id="bytes that are not text"),
    pytest.param(b"{not json", "not JSON", id="garbage"),
    pytest.param(b"[]", "not a whole", id="a list"),
    pytest.param(json.dumps(cut(["content"])), "content", id="no content"),
    pytest.param(json.dumps(cut(["content", 0, "analyses"])), "analyses", id="no analyses"),
    pytest.param(
        json.dumps(cut(["content", 0, "queue", "pending_count"])),
        "pending_count",
        id="a count missing",
    ),
    pytest.param(
        json.dumps(replaced(["content", 0, "queue", "queued_count"], "0")),
        "queued_count",
        id="a count as a string",
    ),
    pytest.param(
        json.dumps(replaced(["content", 0, "queue", "running_count"], -1)),
        "running_count",
        id="a negative count",
    ),
    pytest.param(
        json.dumps(cut(["content", 0, "analyses", 0, "analysis", "status_count"])),
        "status_count",
        id="an analysis without its status count",
    ),
    pytest.param(
        json.dumps(replaced(["content", 0, "queue", "name"], "")),
        "name",
        id="an empty queue name",
    ),
    pytest.param(json.dumps(replaced(["status"], "FAILURE")), "status", id="not SUCCESS"),
    pytest.param(json.dumps(replaced(["type"], "other")), "type", id="another type"),
]


@pytest.mark.parametrize(("raw", "says"), PARTIAL)
def test_a_partial_or_garbled_message_is_refused_whole(raw: str | bytes, says: str) -> None:
    with pytest.raises(SnapshotError, match=says):
        parse(raw)


counts = st.integers(min_value=0, max_value=1000)
names = st.sampled_from(["M-1-v2", "N-2-v2", "celery-v2", "celery", "task-controller"])


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    queue_names = draw(st.lists(names, unique=True, max_size=5))
    entries = []
    for name in queue_names:
        listed = [
            analysis(
                draw(st.integers(1, 6)),
                draw(st.lists(names, max_size=3)),
                in_queue=draw(counts),
                status=draw(st.sampled_from(["RUN_STARTED", "READY", "INPUTS_GENERATION_QUEUED"])),
                priority=draw(st.one_of(st.none(), st.integers(-5, 15))),
            )
            for _ in range(draw(st.integers(0, 3)))
        ]
        fields = {
            f: draw(counts)
            for f in ("pending_count", "queued_count", "running_count", "queue_message_count")
        }
        entries.append((queue(name, **fields, worker_count=draw(counts)), listed))
    return message(*entries)


@given(messages())
def test_any_whole_message_converts_to_sane_counts(body: dict[str, Any]) -> None:
    taken = snapshot(body)
    ids = {a["analysis"]["id"] for entry in body["content"] for a in entry["analyses"]}
    for name, work in taken.queues.items():
        assert name not in {"celery", "celery-v2", "task-controller"}
        assert work.analyses <= max(len(ids), 1)
        assert sum(work.priorities.values()) == work.analyses
        assert all(1 <= p <= 10 for p in work.priorities)
        # Work on the queue always shows as an analysis: a strategy never reads it as idle.
        assert work.pending == 0 or work.analyses >= 1


@given(messages(), st.data())
def test_a_message_cut_anywhere_is_refused(body: dict[str, Any], data: st.DataObject) -> None:
    text = json.dumps(body)
    end = data.draw(st.integers(0, len(text) - 1))
    with pytest.raises(SnapshotError):
        parse(text[:end])
