"""The scaling core: every worked case of the design brief and the platform's own tests."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from scaler.configuration import INT32_MAX, ScalingConfiguration, ScalingStrategy
from scaler.strategies import desired_workers

FIXED = "FIXED_WORKERS"
QUEUE = "QUEUE_LOAD"
DYNAMIC = "DYNAMIC_TASKS"

CASES: list[tuple[str, dict[str, Any], int, int, int]] = [
    # (id, configuration, analyses, pending, desired)
    (
        "dynamic 3x15 chunks, 5 per worker",
        {"scaling_strategy": DYNAMIC, "chunks_per_worker": 5},
        3,
        45,
        9,
    ),
    ("fixed 5, 3 analyses", {"scaling_strategy": FIXED, "worker_count_fixed": 5}, 3, 0, 5),
    (
        "fixed 5, idle, min 3",
        {"scaling_strategy": FIXED, "worker_count_fixed": 5, "worker_count_min": 3},
        0,
        0,
        3,
    ),
    (
        "fixed 5, 1 analysis, min 1",
        {"scaling_strategy": FIXED, "worker_count_fixed": 5, "worker_count_min": 1},
        1,
        0,
        5,
    ),
    ("fixed 5, idle", {"scaling_strategy": FIXED, "worker_count_fixed": 5}, 0, 0, 0),
    (
        "fixed 2, min 4 wins",
        {
            "scaling_strategy": FIXED,
            "worker_count_fixed": 2,
            "worker_count_min": 4,
            "worker_count_max": 10,
        },
        1,
        3,
        4,
    ),
    (
        "fixed ignores max",
        {"scaling_strategy": FIXED, "worker_count_fixed": 12, "worker_count_max": 3},
        1,
        0,
        12,
    ),
    ("queue load max 5, 3 analyses", {"scaling_strategy": QUEUE, "worker_count_max": 5}, 3, 0, 3),
    ("queue load max 5, 30 analyses", {"scaling_strategy": QUEUE, "worker_count_max": 5}, 30, 0, 5),
    (
        "queue load min 2, 1 analysis",
        {"scaling_strategy": QUEUE, "worker_count_max": 5, "worker_count_min": 2},
        1,
        0,
        2,
    ),
    ("queue load left-over sub-tasks count as work", {"scaling_strategy": QUEUE}, 0, 7, 1),
    (
        "dynamic cpw 2, 8 pending",
        {"scaling_strategy": DYNAMIC, "chunks_per_worker": 2, "worker_count_max": 10},
        1,
        8,
        4,
    ),
    (
        "dynamic cpw 1, 80 pending",
        {"scaling_strategy": DYNAMIC, "chunks_per_worker": 1, "worker_count_max": 10},
        1,
        80,
        10,
    ),
    (
        "dynamic cpw 800, 80 pending",
        {"scaling_strategy": DYNAMIC, "chunks_per_worker": 800, "worker_count_max": 10},
        1,
        80,
        1,
    ),
    ("dynamic cpw 4, 12 pending", {"scaling_strategy": DYNAMIC, "chunks_per_worker": 4}, 1, 12, 3),
    ("dynamic cpw 4, 13 pending", {"scaling_strategy": DYNAMIC, "chunks_per_worker": 4}, 1, 13, 4),
    (
        "dynamic min 3, idle",
        {"scaling_strategy": DYNAMIC, "chunks_per_worker": 4, "worker_count_min": 3},
        0,
        0,
        3,
    ),
    (
        "dynamic min 3, one task",
        {"scaling_strategy": DYNAMIC, "chunks_per_worker": 4, "worker_count_min": 3},
        1,
        1,
        3,
    ),
    (
        "dynamic analysis being split counts as one task",
        {"scaling_strategy": DYNAMIC, "chunks_per_worker": 10},
        2,
        0,
        1,
    ),
    (
        "dynamic counts max(pending, analyses)",
        {"scaling_strategy": DYNAMIC, "chunks_per_worker": 1},
        6,
        2,
        6,
    ),
    ("dynamic left-over sub-tasks", {"scaling_strategy": DYNAMIC, "chunks_per_worker": 2}, 0, 3, 2),
    ("idle is zero by default", {}, 0, 0, 0),
    ("default is fixed 1", {}, 2, 10, 1),
    (
        "only the chosen strategy's fields act",
        {"scaling_strategy": QUEUE, "worker_count_fixed": 9, "chunks_per_worker": 1},
        2,
        100,
        2,
    ),
    (
        "int32 extremes",
        {"scaling_strategy": DYNAMIC, "chunks_per_worker": 1, "worker_count_max": INT32_MAX},
        INT32_MAX,
        INT32_MAX,
        INT32_MAX,
    ),
]


@pytest.mark.parametrize(
    ("config", "analyses", "pending", "desired"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_worked_cases(config: dict[str, Any], analyses: int, pending: int, desired: int) -> None:
    assert desired_workers(config, analyses=analyses, pending=pending) == desired
    typed = ScalingConfiguration.model_validate(config)
    assert desired_workers(typed, analyses=analyses, pending=pending) == desired


def test_no_configuration_means_defaults() -> None:
    assert desired_workers(None, analyses=1, pending=0) == 1


@pytest.mark.parametrize(("analyses", "pending"), [(-1, 0), (0, -1)])
def test_negative_work_is_refused(analyses: int, pending: int) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        desired_workers({}, analyses=analyses, pending=pending)


def test_a_bad_plain_mapping_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError, match="chunks_per_worker"):
        desired_workers({"chunks_per_worker": 0}, analyses=1, pending=1)


counts = st.integers(min_value=0, max_value=10_000)


@st.composite
def configurations(draw: st.DrawFn) -> ScalingConfiguration:
    maximum = draw(counts)
    return ScalingConfiguration(
        scaling_strategy=draw(st.sampled_from(ScalingStrategy)),
        worker_count_fixed=draw(counts),
        worker_count_max=maximum,
        worker_count_min=draw(st.integers(min_value=0, max_value=maximum)),
        chunks_per_worker=draw(st.integers(min_value=1, max_value=1_000)),
    )


@given(configurations(), counts, counts)
def test_the_floor_always_holds(config: ScalingConfiguration, analyses: int, pending: int) -> None:
    assert desired_workers(config, analyses=analyses, pending=pending) >= config.worker_count_min


@given(configurations(), counts, counts)
def test_the_cap_holds_unless_the_floor_is_higher(
    config: ScalingConfiguration, analyses: int, pending: int
) -> None:
    desired = desired_workers(config, analyses=analyses, pending=pending)
    if config.scaling_strategy is not ScalingStrategy.FIXED_WORKERS:
        assert desired <= max(config.worker_count_max, config.worker_count_min)


@given(configurations(), counts)
def test_idle_asks_only_for_the_floor(config: ScalingConfiguration, _: int) -> None:
    assert desired_workers(config, analyses=0, pending=0) == config.worker_count_min


@given(configurations(), counts, counts, counts)
def test_dynamic_tasks_is_monotone_in_pending(
    config: ScalingConfiguration, analyses: int, pending: int, more: int
) -> None:
    config = config.model_copy(update={"scaling_strategy": ScalingStrategy.DYNAMIC_TASKS})
    fewer = desired_workers(config, analyses=analyses, pending=pending)
    assert desired_workers(config, analyses=analyses, pending=pending + more) >= fewer


@given(configurations(), counts, counts)
def test_work_gets_at_least_one_worker_when_the_strategy_allows(
    config: ScalingConfiguration, analyses: int, pending: int
) -> None:
    if analyses + pending == 0:
        return
    desired = desired_workers(config, analyses=analyses, pending=pending)
    allowed = (
        config.worker_count_fixed
        if config.scaling_strategy is ScalingStrategy.FIXED_WORKERS
        else config.worker_count_max
    )
    assert desired >= min(1, allowed)


# The DYNAMIC_TASKS rule with every input: (id, configuration, analyses, pending, sub_tasks,
# queued_or_running, slots_per_worker, desired).
WORK_CASES: list[tuple[str, dict[str, Any], int, int, int, int, int, int]] = [
    (
        "3x15 chunks at submission, 5 per worker",
        {"scaling_strategy": DYNAMIC, "chunks_per_worker": 5},
        3,
        45,
        45,
        45,
        1,
        9,
    ),
    (
        "chunks still wait for every worker: upstream's count holds",
        {"scaling_strategy": DYNAMIC, "chunks_per_worker": 10},
        1,
        30,
        87,
        30,
        1,
        9,
    ),
    (
        "the tail of a stage: a worker goes as soon as it would be idle",
        {"scaling_strategy": DYNAMIC, "chunks_per_worker": 10},
        1,
        4,
        87,
        3,
        1,
        3,
    ),
    (
        "a split running: the stage's workers start before its chunks are queued",
        {"scaling_strategy": DYNAMIC, "chunks_per_worker": 10},
        1,
        41,
        87,
        1,
        1,
        5,
    ),
    (
        "two slots per worker halve the workers the queue needs",
        {"scaling_strategy": DYNAMIC, "chunks_per_worker": 10},
        1,
        12,
        87,
        12,
        2,
        6,
    ),
    (
        "never above upstream's count, however deep the queue",
        {"scaling_strategy": DYNAMIC, "chunks_per_worker": 2},
        1,
        8,
        8,
        8,
        1,
        4,
    ),
    (
        "the cap",
        {"scaling_strategy": DYNAMIC, "chunks_per_worker": 1, "worker_count_max": 3},
        1,
        9,
        20,
        9,
        1,
        3,
    ),
    (
        "the floor over an idle tail",
        {"scaling_strategy": DYNAMIC, "chunks_per_worker": 1, "worker_count_min": 2},
        1,
        1,
        20,
        0,
        1,
        2,
    ),
    (
        "an analysis being split counts as one sub-task",
        {"scaling_strategy": DYNAMIC, "chunks_per_worker": 10},
        2,
        0,
        0,
        0,
        1,
        1,
    ),
    (
        "other strategies ignore the new counts",
        {"scaling_strategy": QUEUE, "worker_count_max": 5},
        3,
        1,
        90,
        1,
        1,
        3,
    ),
]


@pytest.mark.parametrize(
    ("config", "analyses", "pending", "sub_tasks", "queued_or_running", "slots", "desired"),
    [case[1:] for case in WORK_CASES],
    ids=[case[0] for case in WORK_CASES],
)
def test_dynamic_tasks_with_every_input(
    config: dict[str, Any],
    analyses: int,
    pending: int,
    sub_tasks: int,
    queued_or_running: int,
    slots: int,
    desired: int,
) -> None:
    answer = desired_workers(
        config,
        analyses=analyses,
        pending=pending,
        sub_tasks=sub_tasks,
        queued_or_running=queued_or_running,
        slots_per_worker=slots,
    )
    assert answer == desired


@pytest.mark.parametrize(
    "counts",
    [{"sub_tasks": -1}, {"queued_or_running": -1}],
    ids=["sub_tasks", "queued_or_running"],
)
def test_negative_new_counts_are_refused(counts: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        desired_workers({}, analyses=1, pending=1, **counts)


def test_slots_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="slots_per_worker"):
        desired_workers({}, analyses=1, pending=1, slots_per_worker=0)


@st.composite
def dynamic_work(draw: st.DrawFn) -> tuple[ScalingConfiguration, dict[str, int]]:
    """A DYNAMIC_TASKS configuration and consistent work: queued or running <= pending <=
    recorded sub-tasks."""
    config = draw(configurations()).model_copy(
        update={"scaling_strategy": ScalingStrategy.DYNAMIC_TASKS}
    )
    queued_or_running = draw(counts)
    pending = queued_or_running + draw(counts)
    work = {
        "analyses": draw(counts),
        "pending": pending,
        "sub_tasks": pending + draw(counts),
        "queued_or_running": queued_or_running,
        "slots_per_worker": draw(st.integers(min_value=1, max_value=64)),
    }
    return config, work


def _upstream(config: ScalingConfiguration, work: dict[str, int]) -> int:
    """Upstream's DYNAMIC_TASKS count, capped (its floor aside)."""
    tasks = max(work["sub_tasks"], work["analyses"])
    return min(-(-tasks // config.chunks_per_worker), config.worker_count_max)


@given(dynamic_work())
def test_never_below_upstream_while_chunks_wait_for_its_workers(
    case: tuple[ScalingConfiguration, dict[str, int]],
) -> None:
    config, work = case
    upstream = _upstream(config, work)
    if work["queued_or_running"] >= upstream * work["slots_per_worker"]:
        assert desired_workers(config, **work) >= upstream


@given(dynamic_work())
def test_never_above_upstream(case: tuple[ScalingConfiguration, dict[str, int]]) -> None:
    config, work = case
    assert desired_workers(config, **work) <= max(_upstream(config, work), config.worker_count_min)


@given(dynamic_work(), counts)
def test_monotone_in_recorded_sub_tasks(
    case: tuple[ScalingConfiguration, dict[str, int]], more: int
) -> None:
    config, work = case
    fewer = desired_workers(config, **work)
    assert desired_workers(config, **{**work, "sub_tasks": work["sub_tasks"] + more}) >= fewer


@given(dynamic_work(), counts)
def test_monotone_in_queued_or_running(
    case: tuple[ScalingConfiguration, dict[str, int]], more: int
) -> None:
    config, work = case
    fewer = desired_workers(config, **work)
    more_work = {
        **work,
        "queued_or_running": work["queued_or_running"] + more,
        # Still consistent: what is queued is pending and recorded.
        "pending": work["pending"] + more,
        "sub_tasks": work["sub_tasks"] + more,
    }
    assert desired_workers(config, **more_work) >= fewer


@given(configurations(), counts, counts)
def test_omitted_counts_give_the_rule_before_them(
    config: ScalingConfiguration, analyses: int, pending: int
) -> None:
    explicit = desired_workers(
        config, analyses=analyses, pending=pending, sub_tasks=pending, queued_or_running=pending
    )
    assert desired_workers(config, analyses=analyses, pending=pending) == explicit
    if config.scaling_strategy is ScalingStrategy.DYNAMIC_TASKS and (analyses or pending):
        tasks = max(pending, analyses)
        before = min(-(-tasks // config.chunks_per_worker), config.worker_count_max)
        assert explicit == max(before, config.worker_count_min)


# With `queued` (sub-tasks waiting for a worker) published: (id, configuration, analyses,
# pending, sub_tasks, queued_or_running, queued, slots_per_worker, desired).
QUEUED_CASES: list[tuple[str, dict[str, Any], int, int, int, int, int, int, int]] = [
    (
        "one chunk still queued: every worker running one stays",
        {"scaling_strategy": DYNAMIC, "chunks_per_worker": 10},
        1,
        7,
        87,
        6,
        1,
        1,
        6,
    ),
    (
        "nothing queued: the workers running the last chunks go as they end, one stays",
        {"scaling_strategy": DYNAMIC, "chunks_per_worker": 10},
        1,
        7,
        87,
        5,
        0,
        1,
        1,
    ),
    (
        "a split running: the workers for its chunks start, not one for the split",
        {"scaling_strategy": DYNAMIC, "chunks_per_worker": 10},
        1,
        41,
        87,
        1,
        0,
        1,
        4,
    ),
    (
        "an analysis being split counts as one sub-task",
        {"scaling_strategy": DYNAMIC, "chunks_per_worker": 10},
        2,
        0,
        0,
        0,
        0,
        1,
        1,
    ),
    (
        "left-over sub-tasks running with no analysis: one worker",
        {"scaling_strategy": DYNAMIC, "chunks_per_worker": 1},
        0,
        3,
        3,
        3,
        0,
        1,
        1,
    ),
    (
        "queued above queued_or_running (two reads apart) counts as queued_or_running",
        {"scaling_strategy": DYNAMIC, "chunks_per_worker": 10},
        1,
        10,
        40,
        4,
        9,
        1,
        4,
    ),
    (
        "two slots: workers for the queued and running sub-tasks while any waits",
        {"scaling_strategy": DYNAMIC, "chunks_per_worker": 10},
        1,
        12,
        87,
        12,
        2,
        2,
        6,
    ),
    (
        "the floor over a tail with nothing queued",
        {"scaling_strategy": DYNAMIC, "chunks_per_worker": 1, "worker_count_min": 2},
        1,
        4,
        20,
        4,
        0,
        1,
        2,
    ),
    (
        "the cap over what is recorded and not yet queued",
        {"scaling_strategy": DYNAMIC, "chunks_per_worker": 1, "worker_count_max": 3},
        1,
        20,
        20,
        1,
        0,
        1,
        3,
    ),
    (
        "other strategies ignore it",
        {"scaling_strategy": QUEUE, "worker_count_max": 5},
        3,
        3,
        90,
        3,
        0,
        1,
        3,
    ),
]


@pytest.mark.parametrize(
    (
        "config",
        "analyses",
        "pending",
        "sub_tasks",
        "queued_or_running",
        "queued",
        "slots",
        "desired",
    ),
    [case[1:] for case in QUEUED_CASES],
    ids=[case[0] for case in QUEUED_CASES],
)
def test_dynamic_tasks_with_the_queued_count(
    config: dict[str, Any],
    analyses: int,
    pending: int,
    sub_tasks: int,
    queued_or_running: int,
    queued: int,
    slots: int,
    desired: int,
) -> None:
    answer = desired_workers(
        config,
        analyses=analyses,
        pending=pending,
        sub_tasks=sub_tasks,
        queued_or_running=queued_or_running,
        queued=queued,
        slots_per_worker=slots,
    )
    assert answer == desired


def test_negative_queued_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        desired_workers({}, analyses=1, pending=1, queued=-1)


@st.composite
def queued_work(draw: st.DrawFn) -> tuple[ScalingConfiguration, dict[str, int]]:
    """As `dynamic_work`, with queued <= queued or running."""
    config, work = draw(dynamic_work())
    return config, {**work, "queued": draw(st.integers(0, work["queued_or_running"]))}


def _without_queued(work: dict[str, int]) -> dict[str, int]:
    return {name: value for name, value in work.items() if name != "queued"}


@given(queued_work())
def test_while_a_sub_task_waits_the_answer_is_the_rule_without_queued(
    case: tuple[ScalingConfiguration, dict[str, int]],
) -> None:
    config, work = case
    if work["queued"] > 0:
        assert desired_workers(config, **work) == desired_workers(config, **_without_queued(work))


@given(queued_work())
def test_queued_only_ever_releases_workers(
    case: tuple[ScalingConfiguration, dict[str, int]],
) -> None:
    config, work = case
    assert desired_workers(config, **work) <= desired_workers(config, **_without_queued(work))


@given(queued_work())
def test_with_queued_never_below_upstream_while_queued_chunks_wait_for_its_workers(
    case: tuple[ScalingConfiguration, dict[str, int]],
) -> None:
    config, work = case
    upstream = _upstream(config, work)
    if work["queued"] >= upstream * work["slots_per_worker"]:
        assert desired_workers(config, **work) >= upstream


@given(queued_work())
def test_with_queued_never_above_upstream(
    case: tuple[ScalingConfiguration, dict[str, int]],
) -> None:
    config, work = case
    assert desired_workers(config, **work) <= max(_upstream(config, work), config.worker_count_min)


@given(queued_work(), counts)
def test_monotone_in_queued(case: tuple[ScalingConfiguration, dict[str, int]], more: int) -> None:
    config, work = case
    fewer = desired_workers(config, **work)
    more_work = {
        **work,
        "queued": work["queued"] + more,
        "queued_or_running": work["queued_or_running"] + more,
        "pending": work["pending"] + more,
        "sub_tasks": work["sub_tasks"] + more,
    }
    assert desired_workers(config, **more_work) >= fewer


@given(queued_work(), counts)
def test_with_queued_monotone_in_recorded_sub_tasks(
    case: tuple[ScalingConfiguration, dict[str, int]], more: int
) -> None:
    config, work = case
    fewer = desired_workers(config, **work)
    assert desired_workers(config, **{**work, "sub_tasks": work["sub_tasks"] + more}) >= fewer


@given(queued_work())
def test_with_queued_work_keeps_a_worker(
    case: tuple[ScalingConfiguration, dict[str, int]],
) -> None:
    config, work = case
    if work["analyses"] or work["pending"]:
        assert desired_workers(config, **work) >= min(1, config.worker_count_max)


# --- workers present: none goes while a sub-task waits --------------------------------------

WARMING = {"scaling_strategy": DYNAMIC, "chunks_per_worker": 4, "worker_count_max": 10}
# 1 analysis, 3 sub-tasks pending (2 queued or running, 1 of them queued), 10 recorded: upstream's
# count is 3 and the work alone asks for 2.
WAITING = {"analyses": 1, "pending": 3, "sub_tasks": 10, "queued_or_running": 2, "queued": 1}


@pytest.mark.parametrize(
    ("work", "workers", "desired"),
    [
        (WAITING, 0, 2),
        (WAITING, 3, 3),
        (WAITING, 9, 3),
        ({**WAITING, "queued": 0}, 3, 1),
    ],
    ids=[
        "unknown: the work's answer",
        "a worker still warming stays while a chunk waits",
        "up to upstream's count",
        "nothing queued: the idle ones go",
    ],
)
def test_workers_present_stay_while_a_sub_task_waits(
    work: dict[str, int], workers: int, desired: int
) -> None:
    assert desired_workers(WARMING, **work, workers=workers) == desired


def test_negative_workers_are_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        desired_workers({}, analyses=1, pending=1, workers=-1)


@given(queued_work(), counts)
def test_while_a_sub_task_waits_no_worker_present_goes(
    case: tuple[ScalingConfiguration, dict[str, int]], workers: int
) -> None:
    config, work = case
    answer = desired_workers(config, **work, workers=workers)
    assert answer >= desired_workers(config, **work)
    assert answer <= max(_upstream(config, work), config.worker_count_min)
    if work["queued"] > 0:
        assert answer >= min(workers, _upstream(config, work))
    else:
        assert answer == desired_workers(config, **work)


# --- chunks about to be queued, and a join's workers kept for the next stage ----------------

SPLITTING_CPW_10 = {"scaling_strategy": DYNAMIC, "chunks_per_worker": 10, "worker_count_max": 10}
# One analysis's input stage of 6 chunks (11 sub-tasks), its split running: upstream's count is
# 2, and the 10 sub-tasks ahead ask for 1 by chunks per worker.
SPLITTING = {"analyses": 1, "pending": 11, "sub_tasks": 11, "queued_or_running": 1, "queued": 0}
# Two analyses, 60 sub-tasks recorded (upstream's count 6): one has 3 sub-tasks queued or running
# (2 queued), the other's split is about to queue 6 chunks.
QUEUED_AND_SPLITTING = {
    "analyses": 2,
    "pending": 14,
    "sub_tasks": 60,
    "queued_or_running": 3,
    "queued": 2,
}
JOIN_CPW_2 = {"scaling_strategy": DYNAMIC, "chunks_per_worker": 2, "worker_count_max": 10}
# One analysis in its input join after 5 chunks: 4 sub-tasks pending, 1 of them running, none
# queued, 10 recorded (upstream's count 5); its 5 chunks are joining and 5 workers are present.
JOINING = {
    "analyses": 1,
    "pending": 4,
    "sub_tasks": 10,
    "queued_or_running": 1,
    "queued": 0,
    "joining_chunks": 5,
    "workers": 5,
}
SHORT_GAP = {"stage_gap": 8.0, "worker_start": 20.0}


@pytest.mark.parametrize(
    ("config", "work", "desired"),
    [
        (SPLITTING_CPW_10, SPLITTING, 1),
        (SPLITTING_CPW_10, {**SPLITTING, "unqueued_chunks": 6}, 2),
        (SPLITTING_CPW_10, {**SPLITTING, "unqueued_chunks": 1}, 1),
        (SPLITTING_CPW_10, QUEUED_AND_SPLITTING, 3),
        (SPLITTING_CPW_10, {**QUEUED_AND_SPLITTING, "unqueued_chunks": 6}, 6),
        (
            SPLITTING_CPW_10,
            {**QUEUED_AND_SPLITTING, "unqueued_chunks": 6, "slots_per_worker": 2},
            5,
        ),
        (JOIN_CPW_2, JOINING, 2),
        (JOIN_CPW_2, {**JOINING, **SHORT_GAP}, 5),
        (JOIN_CPW_2, {**JOINING, **SHORT_GAP, "workers": 3}, 3),
        (JOIN_CPW_2, {**JOINING, **SHORT_GAP, "slots_per_worker": 2}, 3),
        (JOIN_CPW_2, {**JOINING, **SHORT_GAP, "sub_tasks": 6}, 3),
        (JOIN_CPW_2, {**JOINING, "stage_gap": 20.0, "worker_start": 20.0}, 2),
        (JOIN_CPW_2, {**JOINING, "stage_gap": 8.0}, 2),
        (JOIN_CPW_2, {**JOINING, "worker_start": 20.0}, 2),
        (JOIN_CPW_2, {**JOINING, **SHORT_GAP, "joining_chunks": 0}, 2),
    ],
    ids=[
        "a split's chunks by chunks per worker, not counted",
        "counted: one slot each, up to upstream's count",
        "one chunk to come: the ahead count stands",
        "queued elsewhere, a split's chunks not counted",
        "counted beside the queued ones, up to upstream's count",
        "two slots per worker: 9 slots wanted, 5 workers",
        "a join: its workers go, but for the ahead count",
        "the last gap was shorter than a worker start: the join's workers stay",
        "only the workers present stay",
        "as many as its chunks' slots",
        "up to upstream's count",
        "a gap as long as a worker start: they go",
        "worker start unknown: they go",
        "no gap seen yet: they go",
        "nothing joining: they go",
    ],
)
def test_dynamic_tasks_with_the_stage_inputs(
    config: dict[str, Any], work: dict[str, Any], desired: int
) -> None:
    assert desired_workers(config, **work) == desired


@pytest.mark.parametrize("name", ["unqueued_chunks", "joining_chunks"])
def test_negative_chunk_counts_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match=f"must not be negative \\({name}=-1\\)"):
        desired_workers({}, analyses=1, pending=1, **{name: -1})


@pytest.mark.parametrize("name", ["stage_gap", "worker_start"])
@pytest.mark.parametrize("seconds", [-1.0, math.nan, math.inf])
def test_seconds_that_are_not_durations_are_refused(name: str, seconds: float) -> None:
    with pytest.raises(ValueError, match=f"{name} must be a number of seconds"):
        desired_workers({}, analyses=1, pending=1, **{name: seconds})


@st.composite
def stage_work(draw: st.DrawFn) -> tuple[ScalingConfiguration, dict[str, Any]]:
    """As `queued_work`, with workers present, chunks about to be queued (no more than are
    pending and not queued), joining chunks, a last gap and a worker start."""
    config, work = draw(queued_work())
    seconds = st.none() | st.floats(min_value=0, max_value=600, allow_nan=False)
    return config, {
        **work,
        "workers": draw(counts),
        "unqueued_chunks": draw(st.integers(0, work["pending"] - work["queued_or_running"])),
        "joining_chunks": draw(counts),
        "stage_gap": draw(seconds),
        "worker_start": draw(seconds),
    }


STAGE_INPUTS = ("unqueued_chunks", "joining_chunks", "stage_gap", "worker_start")


def _without_stage_inputs(work: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in work.items() if name not in STAGE_INPUTS}


@given(stage_work())
def test_the_stage_inputs_only_ever_keep_or_add_workers_up_to_upstream(
    case: tuple[ScalingConfiguration, dict[str, Any]],
) -> None:
    config, work = case
    answer = desired_workers(config, **work)
    assert answer >= desired_workers(config, **_without_stage_inputs(work))
    assert answer <= max(_upstream(config, work), config.worker_count_min)


@given(stage_work())
def test_a_join_keeps_only_workers_present_and_only_after_a_short_gap(
    case: tuple[ScalingConfiguration, dict[str, Any]],
) -> None:
    config, work = case
    without_hold = desired_workers(config, **{**work, "joining_chunks": 0})
    answer = desired_workers(config, **work)
    gap, start = work["stage_gap"], work["worker_start"]
    if gap is None or start is None or gap >= start:
        assert answer == without_hold
    else:
        assert answer <= max(without_hold, work["workers"])


@given(stage_work(), counts)
def test_monotone_in_unqueued_chunks(
    case: tuple[ScalingConfiguration, dict[str, Any]], more: int
) -> None:
    config, work = case
    fewer = desired_workers(config, **work)
    more_work = {
        **work,
        "unqueued_chunks": work["unqueued_chunks"] + more,
        "pending": work["pending"] + more,
        "sub_tasks": work["sub_tasks"] + more,
    }
    assert desired_workers(config, **more_work) >= fewer
