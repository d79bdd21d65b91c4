"""Every call the local stack makes may fail in any way; none ends the stack.

Failures of every kind are injected into each call: the live view's two (finding models through
the API, reading the API's metrics) and the KEDA stand-in's (the scaler over gRPC, the workers'
presence, starting a worker). Each is shown as a state, retried with back-off, and cleared by the
first success.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.exceptions import ConnectionError as RedisConnectionError

from cli.api_client import ApiClientError, LoginRefused
from cli.keda.client import Answer
from cli.keda.timing import KedaTiming
from cli.local.backoff import FIRST_SECONDS, MOST_SECONDS, SHOWN_CHARACTERS, Backoff
from cli.local.keda import KedaStandIn
from cli.local.machine import GIB, worker_budget
from cli.local.pool import PoolCounts
from cli.local.run import Watch


class Deadline(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.DEADLINE_EXCEEDED

    def details(self) -> str:
        return "Deadline Exceeded"


def http_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    return requests.HTTPError(f"{status} Server Error", response=response)


# Everything a call of the stack has been seen to raise, or could.
FAILURES: list[Exception] = [
    requests.ReadTimeout("Read timed out. (read timeout=10)"),
    requests.ConnectionError("[Errno 111] Connection refused"),
    http_error(500),
    http_error(503),
    ValueError("Expecting value: line 1 column 1 (char 0)"),  # not JSON
    ApiClientError("the API did not answer GET /v2/models/ within 10 s"),
    Deadline(),
    RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
    OSError("[Errno 24] Too many open files"),
    TimeoutError("timed out"),
    KeyError("metricSpecs"),
    RuntimeError("line one\nline two\n" + "x" * 500),
]
# An outcome: None is a success, else the failure raised.
outcomes = st.lists(st.one_of(st.none(), st.sampled_from(FAILURES)), min_size=1, max_size=40)


@dataclass
class Scripted:
    """A call that follows a script of outcomes, then succeeds."""

    script: list[Exception | None]
    answer: object = "ok"
    calls: int = 0

    def __call__(self) -> object:
        self.calls += 1
        outcome = self.script.pop(0) if self.script else None
        if outcome is not None:
            raise outcome
        return self.answer


@given(script=outcomes, steps=st.lists(st.floats(0.0, 70.0), min_size=1, max_size=40))
def test_a_backoff_doubles_from_one_second_to_thirty_and_clears_on_success(
    script: list[Exception | None], steps: list[float]
) -> None:
    backoff, call, now = Backoff(), Scripted(list(script)), 0.0
    for step in steps:
        now += step
        before = backoff.failures
        due = backoff.due(now)
        answer = backoff.attempt(call, now)
        if not due:
            assert answer is None and backoff.failures == before
        elif answer is None:
            assert backoff.failures == before + 1
            delay = backoff.next_try - now
            assert delay == pytest.approx(min(FIRST_SECONDS * 2.0**before, MOST_SECONDS))
            shown = backoff.shown("the call", now)
            assert "\n" not in shown and len(backoff.error) <= SHOWN_CHARACTERS
            assert f"failed {backoff.failures}x" in shown
        else:
            assert backoff.failures == 0 and backoff.error == "" and backoff.shown("x") == ""


@settings(max_examples=60)
@given(discover=outcomes, read=outcomes, steps=st.lists(st.floats(0.1, 40.0), max_size=60))
def test_the_live_view_survives_any_failure_of_its_calls(
    discover: list[Exception | None], read: list[Exception | None], steps: list[float]
) -> None:
    finding = Scripted(list(discover))
    reading = Scripted(list(read), answer={"model": "work"})
    watch = Watch(finding, reading, discovery_seconds=2.0)  # type: ignore[arg-type]
    now = 0.0
    for step in [0.0, *steps]:
        now += step
        watch.tick(now)  # never raises
        notes = watch.notes(now)
        assert len(notes) == bool(watch.discovery.error) + bool(watch.metrics.error)
        assert all("next try in" in note for note in notes)
    # Once the scripts run out every call succeeds: after the longest back-off all is clear.
    for _ in range(len(discover) + len(read) + 2):
        now += MOST_SECONDS + 1
        watch.tick(now)
    assert watch.notes(now) == []
    if reading.calls > len(read) or not read:
        assert watch.work == {"model": "work"}


def test_only_a_refused_login_ends_the_view() -> None:
    watch = Watch(Scripted([LoginRefused("wrong password")]), Scripted([]), 2.0)
    with pytest.raises(LoginRefused):
        watch.tick(0.0)


FAST = KedaTiming(
    polling_interval=0.001, hpa_sync_period=0.001, cooldown_period=60.0, max_replicas=5
)


@dataclass
class FailingClient:
    script: list[Exception | None]

    def ask(self, model: str) -> Answer:
        outcome = self.script.pop(0) if self.script else None
        if outcome is not None:
            raise outcome
        return Answer(True, 2.0)

    async def pushes(self, model: str) -> AsyncIterator[bool]:
        await asyncio.Event().wait()  # no push here
        yield False

    async def close_pushes(self) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class FailingPool:
    scaling: list[Exception | None]
    counting: list[Exception | None]
    replicas: dict[str, int] = field(default_factory=dict)

    def scale(self, queue: str, replicas: int) -> None:
        outcome = self.scaling.pop(0) if self.scaling else None
        if outcome is not None:
            raise outcome
        self.replicas[queue] = replicas

    def counts(self, queue: str) -> PoolCounts:
        outcome = self.counting.pop(0) if self.counting else None
        if outcome is not None:
            raise outcome
        return PoolCounts(running=self.replicas.get(queue, 0))


@settings(max_examples=60, deadline=None)
@given(ask=outcomes, scale=outcomes, count=outcomes, steps=st.lists(st.floats(0.05, 20.0)))
def test_the_keda_stand_in_survives_any_failure_of_its_calls(
    ask: list[Exception | None],
    scale: list[Exception | None],
    count: list[Exception | None],
    steps: list[float],
) -> None:
    pool = FailingPool(list(scale), list(count))
    keda = KedaStandIn(FailingClient(list(ask)), pool, FAST)  # type: ignore[arg-type]
    keda.add("m")  # not started: the test runs its rounds itself
    try:
        for _ in steps:
            keda.round()  # never raises
            backoff = keda._backoffs["m"]
            assert backoff.failures == 0 or keda.scaling()["m"].error
            backoff.next_try = 0.0  # the back-off's timing is the test above; skip the wait
        # The scripts run out: everything works again.
        stop = time.monotonic() + 10
        while not (pool.replicas.get("m") and keda.scaling()["m"].active) or (
            keda.scaling()["m"].error
        ):
            assert time.monotonic() < stop, keda.scaling()["m"]
            keda._backoffs.setdefault("m", Backoff()).next_try = 0.0
            keda.round()
    finally:
        keda.stop()


BUDGETS = [
    (2, 22 * GIB, 4),  # this kind of machine: the cores decide
    (16, 8 * GIB, 7),  # memory decides
    (1, GIB // 2, 1),  # never below one
    (4, 3 * GIB, 2),
]


@pytest.mark.parametrize(
    ("cores", "memory", "workers"), BUDGETS, ids=["2 cores", "8 GiB", "tiny", "3 GiB"]
)
def test_the_machine_budget(cores: int, memory: int, workers: int) -> None:
    budget = worker_budget(cores, memory)
    assert budget.workers == workers
    assert f"{cores} cores" in budget.reason


def test_a_read_owed_to_a_new_answer_is_retried_before_its_schedule() -> None:
    """The scaler's answer changed and the read after it failed: the work is read again as soon
    as the back-off allows, not at the next scheduled read."""
    reading = Scripted([http_error(503)], answer={"model": "work"})
    watch = Watch(Scripted([]), reading, discovery_seconds=60.0)
    watch.tick(0.0)
    assert reading.calls == 1 and watch.work == {}
    watch.tick(FIRST_SECONDS / 2, fresh=True)  # the back-off holds it
    assert reading.calls == 1 and watch.owed
    watch.tick(FIRST_SECONDS + 0.01)  # before the next scheduled read (read_seconds = 2)
    assert watch.read_seconds > FIRST_SECONDS + 0.01
    assert reading.calls == 2 and watch.work == {"model": "work"} and not watch.owed
    watch.tick(FIRST_SECONDS + 0.02)  # nothing owed, not scheduled: no read
    assert reading.calls == 2
