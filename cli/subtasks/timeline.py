"""An analysis's sub-tasks as a timeline: rows per worker process, bars, summary figures.

Pure: no I/O, no matplotlib, no clock. The sub-task dicts are those of
`GET /v2/analyses/{id}/sub_task_list/`; the table and the Gantt chart are both drawn from the
`Timeline` made here, so they cannot disagree.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, TypeAdapter

from worker.stages import StagePlan, input_generation, losses

# Waiting for a worker: such a sub-task is on no worker's row, whatever worker last ran it.
WAITING = ("PENDING", "QUEUED")
RUNNING = "STARTED"
# Status rows (sub-tasks without a worker) come after the worker rows, in this order.
STATUS_ROW_ORDER = ("STARTED", "PENDING", "QUEUED", "COMPLETED", "ERROR", "CANCELLED")


def _as_utc(value: datetime | None) -> datetime | None:
    # The API always says Z; a naive time from elsewhere is taken as UTC, as the API stores it.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


Time = Annotated[datetime | None, AfterValidator(_as_utc)]


class SubTaskRecord(BaseModel):
    """The fields of a served sub-task (api/schemas.py `SubTaskOut`) that a timeline needs."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: int
    status: str
    slug: str
    name: str = ""
    queue_time: Time = None
    start_time: Time = None
    end_time: Time = None
    retry_count: int = 0
    worker: str | None = None


_RECORDS = TypeAdapter(list[SubTaskRecord])


def parse_sub_tasks(data: Any) -> list[SubTaskRecord]:
    """The API's JSON answer as records; pydantic's ValidationError names any bad field."""
    return _RECORDS.validate_python(data)


class Kind(StrEnum):
    """What a sub-task does, for its colour: the chunks fan out, the steps are serial."""

    LOOKUP_CHUNK = "lookup chunk"
    INPUTS_STEP = "inputs step"
    LOSS_CHUNK = "loss chunk"
    LOSSES_STEP = "losses step"
    OTHER = "other"


def _chunk_pattern(plan: StagePlan) -> re.Pattern[str]:
    prefix = plan.chunks[0].slug.removesuffix("-1")
    return re.compile(rf"^{re.escape(prefix)}-(\d+)$")


# Read off worker/stages.py, so a renamed slug there cannot silently turn grey here.
_CHUNKS = (
    (_chunk_pattern(input_generation(1)), Kind.LOOKUP_CHUNK),
    (_chunk_pattern(losses(1)), Kind.LOSS_CHUNK),
)
_STEPS = (
    (input_generation(1), Kind.INPUTS_STEP),
    (losses(1), Kind.LOSSES_STEP),
)
# Both stages end in a step slugged `cleanup`; their names tell them apart.
_STEP_BY_NAME = {s.name: kind for plan, kind in _STEPS for s in plan.before + plan.after}
_SHARED_SLUGS = set.intersection(*({s.slug for s in p.before + p.after} for p, _ in _STEPS))
_STEP_BY_SLUG = {
    s.slug: kind
    for plan, kind in _STEPS
    for s in plan.before + plan.after
    if s.slug not in _SHARED_SLUGS
}


def classify(slug: str, name: str) -> tuple[Kind, int | None]:
    """The kind of a sub-task and, for a chunk, its number."""
    for pattern, kind in _CHUNKS:
        match = pattern.match(slug)
        if match:
            return kind, int(match.group(1))
    kind = _STEP_BY_NAME.get(name) or _STEP_BY_SLUG.get(slug) or Kind.OTHER
    return kind, None


@dataclass(frozen=True)
class Span:
    """An interval in seconds since the timeline's origin."""

    start: float
    end: float
    # No end was recorded: it is drawn (and counted) up to the horizon when the sub-task is in
    # flight, else up to the last recorded time.
    open: bool = False

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Row:
    label: str
    # False for a row named after a status, which holds sub-tasks on no worker.
    is_worker: bool


@dataclass(frozen=True)
class Bar:
    """One sub-task: its queue wait, then its run, on one row."""

    id: int
    slug: str
    kind: Kind
    chunk: int | None
    status: str
    worker: str | None
    row: int
    wait: Span | None
    run: Span | None
    retries: int


@dataclass(frozen=True)
class Summary:
    sub_tasks: int
    workers: int
    # From the first queue time to the horizon; None when no sub-task has a time yet.
    wall_seconds: float | None
    run_seconds: float
    mean_wait_seconds: float | None
    # Sub-tasks still waiting or running: the wall time is then "so far".
    in_flight: int
    # (status, sub-tasks) for each status, most frequent first.
    statuses: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Timeline:
    # Time zero of every span: the first queue time (the first start when none was queued).
    origin: datetime | None
    # The last recorded time, in seconds: where the open spans of sub-tasks no longer in flight
    # end (a cancelled sub-task's end is unknown, and nothing was recorded after this).
    last_recorded: float
    # The chart's end: `now` while anything is in flight (its open spans end there), else
    # `last_recorded`.
    horizon: float
    rows: tuple[Row, ...]
    bars: tuple[Bar, ...]
    summary: Summary


def build_timeline(records: Sequence[SubTaskRecord], *, now: datetime) -> Timeline:
    """Rows, bars and summary of an analysis's sub-tasks, as seen at `now` (aware, UTC)."""
    ordered = sorted(records, key=_order)
    origin = _origin(ordered)
    last = _last_recorded(ordered, origin)
    horizon = _horizon(ordered, origin, last, now)
    rows = _rows(ordered)
    index = {row: i for i, row in enumerate(rows)}
    bars = tuple(
        _bar(r, origin, horizon if _in_flight(r) else last, index[_row(r)]) for r in ordered
    )
    summary = _summary(ordered, bars, origin, horizon)
    return Timeline(origin, last, horizon, rows, bars, summary)


def _order(record: SubTaskRecord) -> tuple[bool, datetime, bool, datetime, int]:
    # By start, then queue time, then id (the pipeline order); what never started goes last.
    never = datetime.max.replace(tzinfo=UTC)
    return (
        record.start_time is None,
        record.start_time or never,
        record.queue_time is None,
        record.queue_time or never,
        record.id,
    )


def _times(record: SubTaskRecord) -> Iterable[datetime]:
    return (t for t in (record.queue_time, record.start_time, record.end_time) if t)


def _origin(records: Sequence[SubTaskRecord]) -> datetime | None:
    queued = [r.queue_time for r in records if r.queue_time]
    if queued:
        return min(queued)
    started = [r.start_time for r in records if r.start_time]
    return min(started, default=None)


def _last_recorded(records: Sequence[SubTaskRecord], origin: datetime | None) -> float:
    if origin is None:
        return 0.0
    return _seconds(origin, max(t for r in records for t in _times(r)))


def _horizon(
    records: Sequence[SubTaskRecord], origin: datetime | None, last: float, now: datetime
) -> float:
    if origin is None or not any(_in_flight(r) for r in records):
        return last
    # max(): a client clock behind the workers' must not cut running bars short.
    return max(last, _seconds(origin, now))


def _in_flight(record: SubTaskRecord) -> bool:
    return record.status in WAITING or record.status == RUNNING


def _seconds(origin: datetime, moment: datetime) -> float:
    return (moment - origin).total_seconds()


def _row(record: SubTaskRecord) -> Row:
    # A sub-task back in the queue (a retry) is on no worker now, though it names the last one.
    if record.worker and record.status not in WAITING:
        return Row(record.worker, True)
    return Row(record.status, False)


def _rows(ordered: Sequence[SubTaskRecord]) -> tuple[Row, ...]:
    # Workers by their first start (`ordered` is by start time), then the status rows.
    placed = dict.fromkeys(_row(r) for r in ordered)
    workers = [row for row in placed if row.is_worker]
    statuses = {row.label: row for row in placed if not row.is_worker}
    known = [statuses[s] for s in STATUS_ROW_ORDER if s in statuses]
    others = [statuses[s] for s in sorted(statuses.keys() - set(STATUS_ROW_ORDER))]
    return tuple(workers + known + others)


def _bar(record: SubTaskRecord, origin: datetime | None, open_end: float, row: int) -> Bar:
    kind, chunk = classify(record.slug, record.name)
    wait, run = _spans(record, origin, open_end)
    return Bar(
        id=record.id,
        slug=record.slug,
        kind=kind,
        chunk=chunk,
        status=record.status,
        worker=record.worker,
        row=row,
        wait=wait,
        run=run,
        retries=record.retry_count,
    )


def _spans(
    record: SubTaskRecord, origin: datetime | None, open_end: float
) -> tuple[Span | None, Span | None]:
    if origin is None:
        return None, None
    queued, started, ended = (
        None if t is None else _seconds(origin, t)
        for t in (record.queue_time, record.start_time, record.end_time)
    )
    if record.status in WAITING or started is None:
        # Not running now: a start belongs to an earlier attempt, so the wait runs on.
        return (None if queued is None else Span(queued, max(queued, open_end), True)), None
    # min()/max(): hosts' clocks disagree a little (the splitter stamps the queue time, the
    # worker the start), and a drawn interval never runs backwards.
    wait = None if queued is None else Span(min(queued, started), started)
    if ended is None:
        return wait, Span(started, max(started, open_end), True)
    return wait, Span(started, max(started, ended))


def _summary(
    records: Sequence[SubTaskRecord],
    bars: Sequence[Bar],
    origin: datetime | None,
    horizon: float,
) -> Summary:
    # Only a wait that ended in a start is a queue wait; the rest are still going (or never will).
    waits = [b.wait.seconds for b in bars if b.wait and not b.wait.open]
    return Summary(
        sub_tasks=len(records),
        workers=len({r.worker for r in records if r.worker}),
        wall_seconds=None if origin is None else horizon,
        run_seconds=sum(b.run.seconds for b in bars if b.run),
        mean_wait_seconds=sum(waits) / len(waits) if waits else None,
        in_flight=sum(_in_flight(r) for r in records),
        statuses=tuple(Counter(r.status for r in records).most_common()),
    )


def format_seconds(seconds: float | None) -> str:
    """A duration for people: `4.2 s`, `2 min 05 s`, `1 h 02 min`; `-` when unknown."""
    if seconds is None:
        return "-"
    if round(seconds, 1) < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def shared_queue(workers: Iterable[str]) -> str:
    """The prefix naming the one queue of every worker, or "" when they have no one queue.

    Workers are named `<queue>.<pid>@<host>:<pool pid>` (one Celery node per process; older
    ones `<queue>@<host>:<pool pid>`), and every worker of an analysis has its model's queue:
    said once, it leaves the part that tells workers apart. The prefix is `<queue>.` or
    `<queue>@`.
    """
    names = list(workers)
    if not names or not all("@" in name for name in names):
        return ""
    nodes = {name.partition("@")[0] for name in names}
    queues = {_queue_of(node) for node in nodes}
    if len(queues) != 1:
        return ""
    queue = queues.pop()
    return queue + ("@" if nodes == {queue} else ".")


def _queue_of(node: str) -> str:
    queue, dot, pid = node.rpartition(".")
    return queue if dot and pid.isdigit() else node


def summary_line(summary: Summary) -> str:
    """The summary figures in one line, as printed under the table."""
    workers = f"{summary.workers} worker" + ("" if summary.workers == 1 else "s")
    parts = [
        f"{summary.sub_tasks} sub-task" + ("" if summary.sub_tasks == 1 else "s"),
        f"{workers} used",
        f"wall time {format_seconds(summary.wall_seconds)}",
        f"total run time {format_seconds(summary.run_seconds)}",
        f"mean queue wait {format_seconds(summary.mean_wait_seconds)}",
    ]
    if summary.in_flight:
        parts.append(f"{summary.in_flight} still queued or running")
    return ", ".join(parts)
