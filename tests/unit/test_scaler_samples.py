"""From published samples to model states: the scaler's input core, and the two parsers."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scaler.configuration import INT32_MAX, ScalingConfiguration, ScalingStrategy
from scaler.samples import Sample, build_states
from scaler.sources import PROMQL, SourceError, promql_samples, text_samples
from scaler.state import ModelState
from scaler.strategies import desired_workers
from tests.support.published import published_text

MODEL = "OasisLMF-PiWind-1"
DEFAULT = ScalingConfiguration()


def info(model: str = MODEL, strategy: str = "FIXED_WORKERS", value: float = 1.0) -> Sample:
    return Sample("oasis_model_scaling_info", {"model": model, "strategy": strategy}, value)


def gauge(name: str, value: float, model: str = MODEL, **labels: str) -> Sample:
    return Sample(f"oasis_model_{name}", {"model": model, **labels}, value)


STATE_CASES: list[tuple[str, list[Sample], dict[str, ModelState]]] = [
    ("nothing published", [], {}),
    ("an idle model with defaults", [info()], {MODEL: ModelState()}),
    (
        "a full configuration and work",
        [
            info(strategy="DYNAMIC_TASKS"),
            gauge("analyses", 3),
            gauge("pending_sub_tasks", 45),
            gauge("chunks_per_worker", 5),
            gauge("worker_count_max", 10),
            gauge("worker_count_min", 1),
            gauge("worker_count_fixed", 2),
        ],
        {
            MODEL: ModelState(
                ScalingConfiguration(
                    scaling_strategy=ScalingStrategy.DYNAMIC_TASKS,
                    chunks_per_worker=5,
                    worker_count_min=1,
                    worker_count_fixed=2,
                ),
                analyses=3,
                pending=45,
            )
        },
    ),
    (
        "work of a model without scaling_info is not a model",
        [gauge("analyses", 3, model="Ghost-1-1")],
        {},
    ),
    ("a sample without a model label is ignored", [Sample("oasis_model_analyses", {}, 4)], {}),
    (
        "other metrics are ignored",
        [info(), gauge("queue_messages", 9), Sample("process_cpu_seconds_total", {}, 3)],
        {MODEL: ModelState()},
    ),
    (
        "replicas publishing the same numbers count once (max, not sum)",
        [info(), gauge("analyses", 2), info(), gauge("analyses", 2)],
        {MODEL: ModelState(analyses=2)},
    ),
    (
        "a lagging replica: the largest number wins",
        [info(), gauge("pending_sub_tasks", 4), gauge("pending_sub_tasks", 7)],
        {MODEL: ModelState(pending=7)},
    ),
    (
        "two models are independent",
        [
            info(),
            gauge("analyses", 1),
            info("Other-1-1", "QUEUE_LOAD"),
            gauge("analyses", 4, model="Other-1-1"),
        ],
        {
            MODEL: ModelState(analyses=1),
            "Other-1-1": ModelState(ScalingConfiguration(scaling_strategy="QUEUE_LOAD"), 4, 0),
        },
    ),
    (
        "the DYNAMIC_TASKS inputs and the workers",
        [
            info(strategy="DYNAMIC_TASKS"),
            gauge("analyses", 1),
            gauge("pending_sub_tasks", 30),
            gauge("recorded_sub_tasks", 87),
            gauge("queued_or_running_sub_tasks", 29),
            gauge("queued_sub_tasks", 21),
            gauge("worker_slots", 2),
            gauge("workers", 5),
        ],
        {
            MODEL: ModelState(
                ScalingConfiguration(scaling_strategy="DYNAMIC_TASKS"),
                analyses=1,
                pending=30,
                sub_tasks=87,
                queued_or_running=29,
                queued=21,
                slots_per_worker=2,
                workers=5,
            )
        },
    ),
    (
        "an older publisher: no new inputs, one slot, no workers",
        [info(strategy="DYNAMIC_TASKS"), gauge("pending_sub_tasks", 30)],
        {MODEL: ModelState(ScalingConfiguration(scaling_strategy="DYNAMIC_TASKS"), pending=30)},
    ),
    (
        "3.0 is the integer 3",
        [info(strategy="QUEUE_LOAD"), gauge("worker_count_max", 3.0), gauge("analyses", 5.0)],
        {
            MODEL: ModelState(
                ScalingConfiguration(scaling_strategy="QUEUE_LOAD", worker_count_max=3), 5
            )
        },
    ),
]


@pytest.mark.parametrize(
    ("samples", "states"),
    [case[1:] for case in STATE_CASES],
    ids=[case[0] for case in STATE_CASES],
)
def test_states_from_samples(samples: list[Sample], states: dict[str, ModelState]) -> None:
    built = build_states(samples)
    assert built.states == states
    assert built.problems == []


# (id, samples beyond the model's info, problem text, the state the model falls back to)
PROBLEM_CASES: list[tuple[str, list[Sample], str, ModelState]] = [
    ("an unknown strategy", [info(strategy="FIXED")], "scaling_strategy='FIXED'", ModelState()),
    (
        "no strategy label",
        [Sample("oasis_model_scaling_info", {"model": MODEL}, 1)],
        "scaling_strategy=''",
        ModelState(),
    ),
    (
        "a negative count",
        [info(), gauge("worker_count_fixed", -1)],
        "worker_count_fixed=-1",
        ModelState(),
    ),
    (
        "a fractional count",
        [info(), gauge("worker_count_max", 2.5)],
        "worker_count_max=2.5",
        ModelState(),
    ),
    ("NaN", [info(), gauge("chunks_per_worker", math.nan)], "chunks_per_worker=nan", ModelState()),
    (
        "zero chunks per worker",
        [info(), gauge("chunks_per_worker", 0)],
        "chunks_per_worker=0",
        ModelState(),
    ),
    (
        "beyond int32",
        [info(), gauge("worker_count_fixed", 2.0**31)],
        "worker_count_fixed=2147483648",
        ModelState(),
    ),
    (
        "min above max",
        [info(), gauge("worker_count_min", 5), gauge("worker_count_max", 2)],
        "worker_count_min=5",
        ModelState(),
    ),
    (
        "a bad configuration keeps the model's work",
        [info(strategy="nope"), gauge("analyses", 2)],
        "scaling_strategy='nope'",
        ModelState(analyses=2),
    ),
    ("negative work", [info(), gauge("analyses", -1)], "oasis_model_analyses=-1", ModelState()),
    (
        "infinite work",
        [info(), gauge("pending_sub_tasks", math.inf), gauge("analyses", 1)],
        "oasis_model_pending_sub_tasks=inf",
        ModelState(analyses=1),
    ),
    (
        "replicas disagree on the strategy: the first wins",
        [info(strategy="QUEUE_LOAD"), info(strategy="DYNAMIC_TASKS")],
        "several strategies",
        ModelState(ScalingConfiguration(scaling_strategy="QUEUE_LOAD")),
    ),
]


@pytest.mark.parametrize(
    ("samples", "problem", "state"),
    [case[1:] for case in PROBLEM_CASES],
    ids=[case[0] for case in PROBLEM_CASES],
)
def test_a_bad_value_is_a_problem_and_the_defaults(
    samples: list[Sample], problem: str, state: ModelState
) -> None:
    built = build_states(samples)
    assert built.states == {MODEL: state}
    assert [p.model for p in built.problems] == [MODEL]
    assert problem in built.problems[0].message


def test_a_bad_model_does_not_spoil_the_others() -> None:
    built = build_states([info("Bad-1-1", "nope"), info(), gauge("analyses", 2)])
    assert built.states[MODEL] == ModelState(analyses=2)
    assert built.states["Bad-1-1"] == ModelState()
    assert [p.model for p in built.problems] == ["Bad-1-1"]


configurations = st.builds(
    ScalingConfiguration,
    scaling_strategy=st.sampled_from(ScalingStrategy),
    worker_count_fixed=st.integers(0, INT32_MAX),
    worker_count_max=st.integers(0, INT32_MAX),
    chunks_per_worker=st.integers(1, INT32_MAX),
).flatmap(
    lambda c: st.integers(0, c.worker_count_max).map(
        lambda low: c.model_copy(update={"worker_count_min": low})
    )
)


@given(configurations, st.integers(0, 10**9), st.integers(0, 10**9))
def test_a_published_model_reads_back_as_it_was(
    configuration: ScalingConfiguration, analyses: int, pending: int
) -> None:
    fields: dict[str, Any] = {**configuration.model_dump(mode="json")}
    text = published_text({MODEL: {**fields, "analyses": analyses, "pending": pending}})
    built = build_states(text_samples(text))
    assert built.problems == []
    state = built.states[MODEL]
    assert state == ModelState(configuration, analyses=analyses, pending=pending)
    assert state.desired == desired_workers(configuration, analyses=analyses, pending=pending)


numbers = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**40), 2**40)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "oasis_model_scaling_info",
                    "oasis_model_analyses",
                    "oasis_model_pending_sub_tasks",
                    "oasis_model_worker_count_fixed",
                    "oasis_model_worker_count_min",
                    "oasis_model_worker_count_max",
                    "oasis_model_chunks_per_worker",
                ]
            ),
            st.sampled_from(["A-1-1", "B-1-1"]),
            st.text(max_size=15) | st.sampled_from(list(ScalingStrategy)),
            numbers,
        ),
        max_size=30,
    )
)
def test_no_published_value_breaks_the_scaler(
    rows: list[tuple[str, str, str, float]],
) -> None:
    samples = [
        Sample(name, {"model": model, "strategy": strategy}, float(value))
        for name, model, strategy, value in rows
    ]
    built = build_states(samples)
    for state in built.states.values():
        assert state.desired >= 0  # every state is valid: computing it never raises


def test_text_samples_reads_the_exposition_format() -> None:
    text = published_text({MODEL: {"scaling_strategy": "QUEUE_LOAD", "analyses": 2}})
    samples = text_samples(text)
    assert Sample("oasis_model_analyses", {"model": MODEL}, 2.0) in samples
    assert build_states(samples).states[MODEL].desired == 2


def test_text_samples_refuses_garbage() -> None:
    with pytest.raises(ValueError):
        text_samples("this is not { metrics\n")


def promql_answer(*rows: tuple[dict[str, str], str]) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {"metric": labels, "value": [1700000000.0, value]} for labels, value in rows
            ],
        },
    }


def test_promql_samples_read_a_vector() -> None:
    answer = promql_answer(
        ({"__name__": "oasis_model_scaling_info", "model": MODEL, "strategy": "QUEUE_LOAD"}, "1"),
        ({"__name__": "oasis_model_analyses", "model": MODEL}, "3"),
        ({"__name__": "oasis_model_pending_sub_tasks", "model": MODEL}, "NaN"),
    )
    samples = promql_samples(answer)
    assert samples[1] == Sample("oasis_model_analyses", {"model": MODEL}, 3.0)
    assert math.isnan(samples[2].value)
    built = build_states(samples)
    assert built.states[MODEL].desired == 3
    assert len(built.problems) == 1  # the NaN


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"status": "error", "errorType": "bad_data", "error": "parse error"}, "parse error"),
        ({"status": "success", "data": {"resultType": "matrix", "result": []}}, "'matrix'"),
        ("not json object", "not json object"),
    ],
    ids=["refused", "not a vector", "not an object"],
)
def test_promql_samples_refuse_what_is_not_an_answer(answer: Any, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        promql_samples(answer)


def test_one_query_asks_for_every_input_merged_over_replicas() -> None:
    assert PROMQL.startswith("max by (__name__, model, strategy) (")
    for name in ("oasis_model_scaling_info", "oasis_model_pending_sub_tasks"):
        assert name in PROMQL


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("recorded_sub_tasks", -1.0),
        ("queued_or_running_sub_tasks", 1.5),
        ("queued_sub_tasks", -2.0),
        ("worker_slots", math.nan),
        ("workers", math.inf),
    ],
)
def test_a_bad_new_input_is_a_problem_and_counts_as_unpublished(name: str, value: float) -> None:
    built = build_states(
        [info(strategy="DYNAMIC_TASKS"), gauge("pending_sub_tasks", 3), gauge(name, value)]
    )
    state = built.states[MODEL]
    assert (state.sub_tasks or 0, state.queued_or_running or 0, state.workers) == (0, 0, 0)
    assert state.queued is None
    assert state.slots_per_worker == 1
    assert [p.message.split("=")[0] for p in built.problems] == [f"oasis_model_{name}"]


def test_the_rule_gets_the_published_inputs() -> None:
    """The chunks still wait for all 9 of upstream's workers: the model keeps 9, where the
    pending count alone (30 / 10 per worker) would ask for 3."""
    built = build_states(
        [
            info(strategy="DYNAMIC_TASKS"),
            gauge("chunks_per_worker", 10),
            gauge("analyses", 1),
            gauge("pending_sub_tasks", 30),
            gauge("recorded_sub_tasks", 87),
            gauge("queued_or_running_sub_tasks", 29),
        ]
    )
    assert built.states[MODEL].desired == 9


def test_nothing_queued_releases_the_workers_running_the_last_chunks() -> None:
    """The same model with the queued count published: nothing waits, so only one worker is
    kept for the join to come; the others leave as their chunks end."""
    built = build_states(
        [
            info(strategy="DYNAMIC_TASKS"),
            gauge("chunks_per_worker", 10),
            gauge("analyses", 1),
            gauge("pending_sub_tasks", 11),
            gauge("recorded_sub_tasks", 87),
            gauge("queued_or_running_sub_tasks", 9),
            gauge("queued_sub_tasks", 0),
        ]
    )
    assert built.states[MODEL].desired == 1


JOIN = [
    info(strategy="DYNAMIC_TASKS"),
    gauge("chunks_per_worker", 2),
    gauge("analyses", 1),
    gauge("pending_sub_tasks", 4),
    gauge("recorded_sub_tasks", 10),
    gauge("queued_or_running_sub_tasks", 1),
    gauge("queued_sub_tasks", 0),
    gauge("workers", 5),
    gauge("joining_chunks", 5),
]


def test_a_joining_stage_keeps_its_workers_when_the_last_gap_was_shorter_than_a_start() -> None:
    """An input stage's 5 chunks ended and its join runs: with the model's last gap between
    stages (8 s) under the scaler's worker start (20 s) its 5 workers stay; over it, or with no
    gap published yet, only the join's one does."""
    short = build_states([*JOIN, gauge("stage_gap_seconds", 8.0)], worker_start=20.0)
    assert (short.states[MODEL].stage_gap, short.states[MODEL].joining_chunks) == (8.0, 5)
    assert short.states[MODEL].desired == 5
    long = build_states([*JOIN, gauge("stage_gap_seconds", 25.0)], worker_start=20.0)
    assert long.states[MODEL].desired == 2
    assert build_states(JOIN, worker_start=20.0).states[MODEL].desired == 2
    assert build_states([*JOIN, gauge("stage_gap_seconds", 8.0)]).states[MODEL].desired == 2
    assert not short.problems and not long.problems


def test_a_split_about_to_queue_its_chunks_asks_a_slot_for_each() -> None:
    built = build_states(
        [
            info(strategy="DYNAMIC_TASKS"),
            gauge("chunks_per_worker", 10),
            gauge("analyses", 1),
            gauge("pending_sub_tasks", 11),
            gauge("recorded_sub_tasks", 11),
            gauge("queued_or_running_sub_tasks", 1),
            gauge("queued_sub_tasks", 0),
            gauge("unqueued_chunks", 6),
        ]
    )
    assert built.states[MODEL].unqueued_chunks == 6
    assert built.states[MODEL].desired == 2


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("unqueued_chunks", -1.0),
        ("joining_chunks", 2.5),
        ("stage_gap_seconds", -3.0),
        ("stage_gap_seconds", math.nan),
        ("stage_gap_seconds", math.inf),
    ],
)
def test_a_bad_stage_input_is_a_problem_and_changes_nothing(name: str, value: float) -> None:
    published = [s for s in JOIN if s.name != f"oasis_model_{name}"]
    built = build_states([*published, gauge(name, value)], worker_start=20.0)
    state = built.states[MODEL]
    assert [p.message.split("=")[0] for p in built.problems] == [f"oasis_model_{name}"]
    assert (state.unqueued_chunks, state.stage_gap) == (0, None)
    # Unknown or 0: the join's workers go, as without the stage inputs.
    assert state.desired == 2
