"""One OasisPlatform queue-status message -> each model queue's work: the exporter's pure core.

The platform's websocket `/ws/v2/queue-status/` and its REST `GET /v2/queue-status/` carry the
same message, `{"time", "type": "queue_status.updated", "status": "SUCCESS", "content": [...]}`,
each a full snapshot of the queues with activity: a queue left out has no work.

Upstream's worker-controller rules, followed here:
- an analysis is de-duplicated by id across the queue entries that list it;
- it counts for every queue in its `queue_names` while `status_count.TOTAL_IN_QUEUE` > 0;
- system queues (`celery`, `celery-v2`, `task-controller`) are no model's and are skipped;
- a model queue with messages and no counted analysis has work: it counts one stand-in
  analysis of the default priority 4;
- queue names are compared lower-cased.

Where this differs from upstream, and why:
- An analysis whose status is queued or started (a main task, docs/metrics.md) counts for the
  model queues it is listed under even with nothing in queue yet: an analysis still being split
  is work (design: its first worker starts while the chunks are queued).
- The stand-in analysis also covers a model queue whose sub-tasks are pending or running with
  no analysis listed, not only one with queued sub-tasks or messages.
- `pending` (oasis_model_pending_sub_tasks) is the queue's sub-tasks pending, queued or running,
  or its broker messages when those are more (the broker's count is the truth when the
  platform's sub-task rows lag); upstream instead counts every sub-task of the analysis,
  completed ones included.
- `recorded` (oasis_model_recorded_sub_tasks) is upstream's own count, each counted analysis's
  `sub_task_count` (1 when 0), and `queued_or_running` is `pending`: the platform keeps a
  sub-task PENDING while it waits on the broker (QUEUED only once a worker took it), so its
  pending ones are on the queue but for a split's short moment. `queued` is those of them not
  running (`running_count` is the platform's STARTED ones): a sub-task a worker took but has not
  started counts as waiting, the cautious side.
- A message that is not whole (a missing or mistyped field anywhere) is refused entirely
  (`SnapshotError`): reading the rest would publish "no work" for a model whose entry was cut.
  Unknown fields are ignored.

Pure: no I/O; nothing from flask, requests, websockets or prometheus_client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

# The platform's status names, which ours are: a main task is queued or running a stage.
from api.store.statuses import MAIN_TASK_STATUSES
from scaler.budget import MAX_PRIORITY, MIN_PRIORITY

SYSTEM_QUEUES = frozenset({"celery", "celery-v2", "task-controller"})
# Upstream's default analysis priority, and its range (the fleet budget's).
DEFAULT_PRIORITY = 4
PRIORITIES = range(MIN_PRIORITY, MAX_PRIORITY + 1)

Count = Annotated[StrictInt, Field(ge=0)]


class SnapshotError(ValueError):
    """The message is not a whole queue-status snapshot; the text says what is wrong."""


class _Loose(BaseModel):
    # The platform adds fields between releases; only the ones read here must be right.
    model_config = ConfigDict(extra="ignore", frozen=True)


class _StatusCount(_Loose):
    TOTAL_IN_QUEUE: Count


class _Analysis(_Loose):
    id: StrictInt
    status: str
    priority: StrictInt | None = None
    queue_names: list[str]
    status_count: _StatusCount
    # Every sub-task of the analysis, completed ones included (an older platform: not sent).
    sub_task_count: Count = 0


class _Listed(_Loose):
    analysis: _Analysis


class _Queue(_Loose):
    name: Annotated[str, Field(min_length=1)]
    pending_count: Count
    queued_count: Count
    running_count: Count
    queue_message_count: Count
    worker_count: Count


class _Entry(_Loose):
    queue: _Queue
    analyses: list[_Listed]


class _Message(_Loose):
    time: str | None = None
    type: Literal["queue_status.updated"]
    status: Literal["SUCCESS"]
    content: list[_Entry]


@dataclass(frozen=True)
class QueueWork:
    """One model queue's work in a snapshot."""

    analyses: int = 0
    pending: int = 0
    messages: int = 0
    # Consumers of the queue, as the broker counts them.
    workers: int = 0
    # Priority -> analyses of that priority (only priorities with at least one).
    priorities: Mapping[int, int] = field(default_factory=dict)
    # Sub-tasks recorded for the counted analyses (upstream's count), and those on the queue or
    # running (the platform's pending ones are on the queue).
    recorded: int = 0
    queued_or_running: int = 0
    # Those of them waiting for a worker: on the queue, not running.
    queued: int = 0


IDLE = QueueWork()


@dataclass(frozen=True)
class Snapshot:
    """Every model queue with activity, by lower-cased name; a queue absent is idle."""

    queues: Mapping[str, QueueWork]
    # When the platform built it (None when the message did not say).
    time: datetime | None = None

    def work(self, queue: str) -> QueueWork:
        return self.queues.get(queue.lower(), IDLE)


def parse(raw: str | bytes) -> Snapshot:
    """A snapshot from the text of one message (the websocket's, or the REST body), decoded and
    validated in one pass (pydantic's JSON parser)."""
    try:
        message = _Message.model_validate_json(raw)
    except ValidationError as error:
        if any(detail["type"] == "json_invalid" for detail in error.errors()):
            raise SnapshotError(f"not JSON: {error.errors()[0]['msg']}") from None
        raise _refused(error) from None
    return Snapshot(_work(message.content), _time(message.time))


def snapshot(body: object) -> Snapshot:
    """A snapshot from a decoded message; raises SnapshotError unless the message is whole."""
    try:
        message = _Message.model_validate(body)
    except ValidationError as error:
        raise _refused(error) from None
    return Snapshot(_work(message.content), _time(message.time))


def _refused(error: ValidationError) -> SnapshotError:
    problems = "; ".join(
        f"{'.'.join(str(part) for part in detail['loc']) or 'message'}: {detail['msg']}"
        for detail in error.errors()[:5]
    )
    return SnapshotError(f"not a whole queue-status message ({problems})")


def _work(content: list[_Entry]) -> dict[str, QueueWork]:
    queues: dict[str, _Queue] = {}
    first_seen: dict[int, _Analysis] = {}
    listed_under: dict[int, set[str]] = {}
    for entry in content:
        name = entry.queue.name.lower()
        # A queue listed twice (never seen, but cheap to bear): the larger counts hold.
        queues[name] = _larger(queues.get(name), entry.queue)
        for listed in entry.analyses:
            first_seen.setdefault(listed.analysis.id, listed.analysis)
            listed_under.setdefault(listed.analysis.id, set()).add(name)
    counted: dict[str, dict[int, _Analysis]] = {}  # queue -> analysis id -> analysis
    for analysis_id, analysis in first_seen.items():
        for queue in _queues_of(analysis, listed_under[analysis_id]):
            counted.setdefault(queue, {})[analysis_id] = analysis
    work = {}
    for name in sorted(set(queues) | set(counted)):
        if name in SYSTEM_QUEUES:
            continue
        work[name] = _queue_work(queues.get(name), counted.get(name, {}))
    return work


def _queues_of(analysis: _Analysis, listed: set[str]) -> set[str]:
    queues = set()
    if analysis.status_count.TOTAL_IN_QUEUE > 0:
        queues |= {name.lower() for name in analysis.queue_names}
    if analysis.status in MAIN_TASK_STATUSES:
        queues |= listed
    return queues - SYSTEM_QUEUES


def _queue_work(queue: _Queue | None, analyses: Mapping[int, _Analysis]) -> QueueWork:
    sub_tasks = messages = workers = running = 0
    if queue is not None:
        sub_tasks = queue.pending_count + queue.queued_count + queue.running_count
        messages = queue.queue_message_count
        workers = queue.worker_count
        running = queue.running_count
    pending = max(sub_tasks, messages)
    priorities: dict[int, int] = {}
    for analysis in analyses.values():
        priority = _priority(analysis.priority)
        priorities[priority] = priorities.get(priority, 0) + 1
    count = len(analyses)
    # Upstream's count: an analysis with no sub-task recorded yet counts one.
    recorded = sum(max(analysis.sub_task_count, 1) for analysis in analyses.values())
    if count == 0 and pending > 0:
        count, priorities = 1, {DEFAULT_PRIORITY: 1}  # work with no analysis listed
        recorded = 1
    recorded = max(recorded, pending)
    queued = max(pending - running, 0)
    return QueueWork(count, pending, messages, workers, priorities, recorded, pending, queued)


def _larger(old: _Queue | None, new: _Queue) -> _Queue:
    if old is None:
        return new
    return _Queue(
        name=new.name,
        **{
            name: max(getattr(old, name), getattr(new, name))
            for name in (
                "pending_count",
                "queued_count",
                "running_count",
                "queue_message_count",
                "worker_count",
            )
        },
    )


def _priority(value: int | None) -> int:
    return value if value is not None and value in PRIORITIES else DEFAULT_PRIORITY


def _time(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None  # ordering by time is a nicety; a message is not refused for it
