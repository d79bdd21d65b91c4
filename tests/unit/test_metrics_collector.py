"""The metrics collector's pure parts, and the collector itself on SQLite with Redis away.

Reserved messages are parsed defensively, families are built from whatever the hashes hold,
and histogram buckets are accumulated from the workers' per-bucket counters. Every test that
collects uses its own CollectorRegistry.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.registry import DuplicateTimeseries
from sqlalchemy.orm import Session, sessionmaker

from api.db import migrate
from api.metrics import ModelCollector
from api.metrics.broker import reserved_per_queue, routing_key
from api.metrics.families import cumulative_buckets, duration_histogram, sub_task_counter
from api.store.engine import make_engine
from api.store.orm import Analysis, Model, Portfolio, SubTask
from tests.support.servers import free_port
from worker import activity
from worker.activity import BUCKETS, bound_field, bucket_bound, counter_field

Q = "OasisLMF-PiWind-1"

ROUTING_KEYS: list[tuple[str, bytes | str, str | None]] = [
    ("kombu's entry", json.dumps([{"body": "x"}, Q, Q]), Q),
    ("as bytes", json.dumps([{}, "", Q]).encode(), Q),
    ("a longer list", json.dumps([{}, "", Q, "more"]), Q),
    ("not JSON", b"{oops", None),
    ("not UTF-8", b"\xff\xfe[1, 2, 3]", None),
    ("empty", b"", None),
    ("an object", json.dumps({"routing_key": Q}), None),
    ("too short", json.dumps([{}, Q]), None),
    ("key not text", json.dumps([{}, Q, 7]), None),
    ("key null", json.dumps([{}, Q, None]), None),
    ("nested beyond the parser", "[" * 100_000 + "]" * 100_000, None),
]


@pytest.mark.parametrize(
    ("entry", "expected"),
    [(entry, expected) for _, entry, expected in ROUTING_KEYS],
    ids=[case[0] for case in ROUTING_KEYS],
)
def test_routing_key_of_an_unacked_entry(entry: bytes | str, expected: str | None) -> None:
    assert routing_key(entry) == expected


def test_reserved_messages_are_counted_per_queue_skipping_bad_entries() -> None:
    entries = [entry for _, entry, _ in ROUTING_KEYS] + [json.dumps([{}, "", "other"])]
    assert reserved_per_queue(entries) == {Q: 3, "other": 1}


def family_samples(family: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}


def labels(**pairs: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(pairs.items()))


COUNTER_CASES: list[tuple[str, dict[bytes, bytes], dict[tuple[str, str, str], float]]] = [
    ("empty", {}, {}),
    (
        "as recorded",
        {
            counter_field(Q, "losses", "COMPLETED").encode(): b"12",
            counter_field(Q, "inputs", "QUEUED").encode(): b"3",
        },
        {(Q, "losses", "COMPLETED"): 12, (Q, "inputs", "QUEUED"): 3},
    ),
    (
        "a model holding the separator",
        {b"a|b-M-1|inputs|ERROR": b"1"},
        {("a|b-M-1", "inputs", "ERROR"): 1},
    ),
    ("unknown status", {f"{Q}|inputs|DONE".encode(): b"1"}, {}),
    ("unknown stage", {f"{Q}|lookup|QUEUED".encode(): b"1"}, {}),
    ("no model", {b"|inputs|QUEUED": b"1"}, {}),
    ("too few parts", {b"inputs|QUEUED": b"1"}, {}),
    ("field not UTF-8", {b"\xff|inputs|QUEUED": b"1"}, {}),
    ("value not a number", {f"{Q}|inputs|QUEUED".encode(): b"many"}, {}),
    ("value negative", {f"{Q}|inputs|QUEUED".encode(): b"-2"}, {}),
    ("value a float", {f"{Q}|inputs|QUEUED".encode(): b"1.5"}, {}),
]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [(fields, expected) for _, fields, expected in COUNTER_CASES],
    ids=[case[0] for case in COUNTER_CASES],
)
def test_counter_family_from_the_hash(
    fields: dict[bytes, bytes], expected: dict[tuple[str, str, str], float]
) -> None:
    family = sub_task_counter(fields)
    assert (family.name, family.type) == ("oasis_sub_tasks", "counter")
    assert family_samples(family) == {
        ("oasis_sub_tasks_total", labels(model=m, stage=s, status=st_)): n
        for (m, s, st_), n in expected.items()
    }


def le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else str(float(bound))


BUCKET_CASES: list[tuple[str, dict[float, int], int, list[float]]] = [
    # (id, recorded counters by bound, recorded count, expected cumulative, +Inf last)
    ("nothing", {}, 0, [0] * len(BUCKETS) + [0]),
    (
        "one in the first, two at 60 s, one above the last",
        {0.5: 1, 60: 2},
        4,
        [1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4],
    ),
    # Recorded under other buckets: 45 s counts from 60 s on.
    ("a bound from another layout", {45: 2}, 2, [0] * 6 + [2] * 10 + [2]),
    ("a count below its buckets is raised", {2.5: 3}, 1, [0, 0, 3] + [3] * 13 + [3]),
]


@pytest.mark.parametrize(
    ("recorded", "count", "expected"),
    [case[1:] for case in BUCKET_CASES],
    ids=[case[0] for case in BUCKET_CASES],
)
def test_cumulative_buckets(recorded: dict[float, int], count: int, expected: list[float]) -> None:
    buckets = cumulative_buckets(recorded, count)
    assert [name for name, _ in buckets] == [le(b) for b in BUCKETS] + ["+Inf"]
    assert [value for _, value in buckets] == expected


def histogram_fields(
    run_times: list[float], model: str = Q, stage: str = "losses"
) -> dict[bytes, bytes]:
    """The hash as worker/activity.record_completed leaves it after these run times."""
    fields: dict[bytes, bytes] = {}
    for seconds in run_times:
        bound = bucket_bound(seconds)
        if bound is not None:
            key = bound_field(model, stage, bound).encode()
            fields[key] = str(int(fields.get(key, b"0")) + 1).encode()
    fields[f"{model}|{stage}|count".encode()] = str(len(run_times)).encode()
    fields[f"{model}|{stage}|sum".encode()] = repr(float(sum(run_times))).encode()
    return fields


HISTOGRAM_CASES: list[
    tuple[str, dict[bytes, bytes], dict[tuple[str, str], tuple[list[float], float]]]
] = [
    ("empty", {}, {}),
    (
        "as recorded",
        histogram_fields([0.2, 7, 7, 99_999]),
        {(Q, "losses"): ([1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4], 0.2 + 14 + 99_999)},
    ),
    (
        "bad fields and values are skipped",
        {
            **histogram_fields([3]),
            f"{Q}|losses|le=abc".encode(): b"5",
            f"{Q}|losses|le=nan".encode(): b"5",
            f"{Q}|losses|le=inf".encode(): b"5",
            f"{Q}|losses|median".encode(): b"5",
            f"{Q}|losses|le=10".encode(): b"ten",
            f"{Q}|lookup|le=10".encode(): b"5",
            b"\xff|losses|count": b"5",
        },
        {(Q, "losses"): ([0, 0, 0, 1] + [1] * 12 + [1], 3)},
    ),
    (
        "one bound spelled two ways",
        {
            f"{Q}|losses|le=1".encode(): b"1",
            f"{Q}|losses|le=1.0".encode(): b"1",
            f"{Q}|losses|count".encode(): b"2",
            f"{Q}|losses|sum".encode(): b"1.5",
        },
        {(Q, "losses"): ([0] + [2] * 15 + [2], 1.5)},
    ),
    (
        "a sum that is not a number reads 0",
        {f"{Q}|inputs|count".encode(): b"2", f"{Q}|inputs|sum".encode(): b"nan"},
        {(Q, "inputs"): ([0] * 16 + [2], 0)},
    ),
]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [case[1:] for case in HISTOGRAM_CASES],
    ids=[case[0] for case in HISTOGRAM_CASES],
)
def test_histogram_family_from_the_hash(
    fields: dict[bytes, bytes], expected: dict[tuple[str, str], tuple[list[float], float]]
) -> None:
    family = duration_histogram(fields)
    assert (family.name, family.type) == ("oasis_sub_task_duration_seconds", "histogram")
    want: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for (model, stage), (buckets, total) in expected.items():
        series = {"model": model, "stage": stage}
        for bound, value in zip([*BUCKETS, math.inf], buckets, strict=True):
            want[("oasis_sub_task_duration_seconds_bucket", labels(**series, le=le(bound)))] = value
        want[("oasis_sub_task_duration_seconds_count", labels(**series))] = buckets[-1]
        want[("oasis_sub_task_duration_seconds_sum", labels(**series))] = total
    got = family_samples(family)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value), key


def buckets_of(family: Any) -> tuple[list[tuple[float, float]], float]:
    """The one series' buckets as (bound, value) in exposition order, and its _count."""
    buckets = [
        (float(s.labels["le"]), s.value) for s in family.samples if s.name.endswith("_bucket")
    ]
    (count,) = [s.value for s in family.samples if s.name.endswith("_count")]
    return buckets, count


@given(
    recorded=st.dictionaries(
        st.sampled_from([*BUCKETS, 0.0, 0.1, 45.0, 1e9]), st.integers(0, 10**9), max_size=20
    ),
    count=st.integers(0, 10**10),
)
def test_buckets_are_cumulative_and_count_is_the_inf_bucket(
    recorded: dict[float, int], count: int
) -> None:
    fields = {bound_field(Q, "losses", b).encode(): str(n).encode() for b, n in recorded.items()}
    fields[f"{Q}|losses|count".encode()] = str(count).encode()
    buckets, total = buckets_of(duration_histogram(fields))
    bounds = [bound for bound, _ in buckets]
    values = [value for _, value in buckets]
    assert bounds == sorted(bounds) and bounds[-1] == math.inf
    assert values == sorted(values)
    assert total == values[-1]


@given(st.lists(st.floats(0, 100_000, allow_nan=False), max_size=50))
def test_recorded_run_times_accumulate_to_the_count_under_each_bound(
    run_times: list[float],
) -> None:
    buckets, total = buckets_of(duration_histogram(histogram_fields(run_times)))
    for bound, value in buckets:
        assert value == sum(1 for seconds in run_times if seconds <= bound), bound
    assert total == len(run_times)


FIELD_CASES: list[tuple[str, str, str]] = [
    ("a queue name", Q, "losses"),
    ("a model holding the separator", "a|b-c-1", "inputs"),
]


@pytest.mark.parametrize(
    ("model", "stage"), [c[1:] for c in FIELD_CASES], ids=[c[0] for c in FIELD_CASES]
)
def test_fields_read_back_as_written(model: str, stage: str) -> None:
    for status in activity.STATUSES:
        assert activity.parse_counter_field(counter_field(model, stage, status)) == (
            model,
            stage,
            status,
        )
    for bound in BUCKETS:
        assert activity.parse_duration_field(bound_field(model, stage, bound)) == (
            model,
            stage,
            bound,
        )


def test_recording_without_redis_logs_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    redis = activity.connect(f"redis://127.0.0.1:{free_port()}/0")
    with caplog.at_level(logging.WARNING, logger="worker.activity"):
        activity.record(redis, Q, "inputs", "QUEUED")
        activity.record_many(redis, Q, {("inputs", "ERROR"): 1, ("inputs", "CANCELLED"): 3})
        activity.record_completed(redis, Q, "losses", 12.5)
    assert len(caplog.records) == 3


# The collector on a real (SQLite) database, with Redis away.


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'api.sqlite3'}")
    migrate(engine)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


def add_model(session: Session, supplier: str, model: str, scaling: Any = None) -> Model:
    row = Model(supplier_id=supplier, model_id=model, version_id="1", scaling_configuration=scaling)
    session.add(row)
    session.flush()
    return row


def add_analysis(session: Session, model: Model, status: str, sub_tasks: list[str]) -> None:
    portfolio = Portfolio(name="p")
    session.add(portfolio)
    session.flush()
    analysis = Analysis(name="a", portfolio_id=portfolio.id, model_id=model.id, status=status)
    session.add(analysis)
    session.flush()
    for i, status_of_task in enumerate(sub_tasks):
        session.add(
            SubTask(
                analysis_id=analysis.id,
                stage="inputs",
                status=status_of_task,
                queue_name=model.queue_name,
                name=f"t{i}",
                slug=f"t-{i}",
            )
        )


def test_without_redis_the_database_gauges_publish_and_bad_configurations_read_as_defaults(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        busy = add_model(
            session, "S", "Busy", {"scaling_strategy": "QUEUE_LOAD", "worker_count_max": 4}
        )
        add_model(session, "S", "Idle")
        # Stored before validation was strict: bad fields read as their defaults.
        add_model(session, "S", "Odd", {"scaling_strategy": "BOGUS", "chunks_per_worker": 3})
        add_model(session, "S", "Junk", [1, 2, 3])
        # `S-Two`,`Words` and `S`,`Two-Words` spell the same queue: their work adds up.
        shared = add_model(session, "S-Two", "Words", {"worker_count_fixed": 6})
        twin = add_model(session, "S", "Two-Words")
        add_analysis(session, busy, "RUN_STARTED", ["QUEUED", "STARTED", "COMPLETED", "CANCELLED"])
        add_analysis(session, busy, "RUN_QUEUED", [])
        add_analysis(session, busy, "INPUTS_GENERATION_QUEUED", [])
        add_analysis(session, busy, "INPUTS_GENERATION_STARTED", ["PENDING"])
        add_analysis(session, busy, "READY", ["COMPLETED"])
        add_analysis(session, busy, "RUN_CANCELLED", ["CANCELLED", "ERROR"])
        add_analysis(session, shared, "RUN_QUEUED", [])
        add_analysis(session, twin, "RUN_STARTED", ["QUEUED"])
    registry = CollectorRegistry()
    redis = activity.connect(f"redis://127.0.0.1:{free_port()}/0")
    ModelCollector(sessions, redis, registry=registry)

    expected = {
        # model: (analyses, pending, strategy, fixed, min, max, per worker)
        "S-Busy-1": (4, 3, "QUEUE_LOAD", 1, 0, 4, 10),
        "S-Idle-1": (0, 0, "FIXED_WORKERS", 1, 0, 10, 10),
        "S-Odd-1": (0, 0, "FIXED_WORKERS", 1, 0, 10, 3),
        "S-Junk-1": (0, 0, "FIXED_WORKERS", 1, 0, 10, 10),
        "S-Two-Words-1": (2, 1, "FIXED_WORKERS", 6, 0, 10, 10),
    }
    for model, (analyses, pending, strategy, fixed, low, high, per) in expected.items():
        value = {"model": model}
        assert registry.get_sample_value("oasis_model_analyses", value) == analyses
        assert registry.get_sample_value("oasis_model_pending_sub_tasks", value) == pending
        assert registry.get_sample_value("oasis_model_queue_messages", value) is None
        info = {"model": model, "strategy": strategy}
        assert registry.get_sample_value("oasis_model_scaling_info", info) == 1
        assert registry.get_sample_value("oasis_model_worker_count_fixed", value) == fixed
        assert registry.get_sample_value("oasis_model_worker_count_min", value) == low
        assert registry.get_sample_value("oasis_model_worker_count_max", value) == high
        assert registry.get_sample_value("oasis_model_chunks_per_worker", value) == per
    names = {family.name for family in registry.collect()}
    assert {"oasis_model_analyses", "oasis_redis_up"} <= names
    assert not names & {
        "oasis_model_queue_messages",
        "oasis_sub_tasks",
        "oasis_sub_task_duration_seconds",
    }
    assert registry.get_sample_value("oasis_redis_up") == 0
    samples = [s for family in registry.collect() for s in family.samples]
    assert len([s for s in samples if s.name == "oasis_model_analyses"]) == len(expected)


def test_the_collector_registers_once_per_registry(sessions: sessionmaker[Session]) -> None:
    registry = CollectorRegistry()
    redis = activity.connect(f"redis://127.0.0.1:{free_port()}/0")
    ModelCollector(sessions, redis, registry=registry)
    with pytest.raises(DuplicateTimeseries):
        ModelCollector(sessions, redis, registry=registry)
    # Unregistered, it is still a collector: nothing is read until collect() is called.
    assert ModelCollector(sessions, redis, registry=None).describe()
