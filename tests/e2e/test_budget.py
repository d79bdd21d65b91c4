"""The fleet budget on the real stack: a private Redis and API, work queued through the real
oasislmf client, the scaler scraping the API, and KEDA's calls over gRPC.

No worker runs, so the queued analyses stay queued (each a main task of its model) and the
numbers hold still while the test reads them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests
from oasislmf.platform_api.client import APIClient
from prometheus_client.parser import text_string_to_metric_families

from protos import externalscaler_pb2 as pb
from protos import externalscaler_pb2_grpc as pb_grpc
from scaler.budget import Preemption
from scaler.service import RunningScaler, running_scaler
from scaler.servicer import metric_name
from scaler.settings import ScalerSettings
from tests.support.numba import numba_cache_root
from tests.support.servers import api_server, redis_server
from tests.support.up import LASTING_WORK, new_analysis, new_model, running_up, status
from worker.demo_model import demo_locations, model_settings

pytestmark = pytest.mark.e2e

PASSWORD = "budget-password"
CALL_TIMEOUT = 3.0
DEADLINE = 20.0
# One worker per queued analysis, up to 10.
ONE_PER_ANALYSIS = {"scaling_strategy": "DYNAMIC_TASKS", "chunks_per_worker": 1}
BUDGET = 6


@dataclass
class Platform:
    client: APIClient
    url: str

    def model(self, name: str) -> dict[str, Any]:
        model: dict[str, Any] = self.client.models.create(
            f"E2E{uuid.uuid4().hex[:6]}", name, "1"
        ).json()
        self.client.models.settings.post(model["id"], model_settings())
        self.client.models.scaling_configuration.post(model["id"], ONE_PER_ANALYSIS)
        return model

    def queue_analyses(self, model: dict[str, Any], count: int, priority: int) -> None:
        """`count` analyses of `model` at `priority`, each queued for input generation."""
        portfolio = self.client.portfolios.create(f"p-{uuid.uuid4().hex[:6]}").json()["id"]
        self.client.portfolios.location_file.post(
            portfolio, demo_locations(3).encode(), content_type="text/csv"
        )
        analyses = self.client.analyses
        for _ in range(count):
            # The client's create() sends no priority: post the same body with one.
            body = {"name": "a", "portfolio": portfolio, "model": model["id"], "priority": priority}
            created = analyses.session.post(analyses.url_endpoint, json=body)
            assert created.status_code == 201, created.text
            queued = analyses.generate(created.json()["id"])
            assert queued.json()["status"] == "INPUTS_GENERATION_QUEUED"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("budget")
    with (
        redis_server(root) as redis_url,
        api_server(root / "data", database_url=None, redis_url=redis_url, password=PASSWORD) as url,
    ):
        yield Platform(APIClient(api_url=url, username="admin", password=PASSWORD), url)


def queue_name(model: dict[str, Any]) -> str:
    return f"{model['supplier_id']}-{model['model_id']}-{model['version_id']}"


class Keda:
    """Calls the scaler as KEDA does for one ScaledObject per model."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._stub = pb_grpc.ExternalScalerStub(channel)

    def workers(self, model: str) -> int:
        ref = pb.ScaledObjectRef(name=model, namespace="oasis", scalerMetadata={"model": model})
        request = pb.GetMetricsRequest(scaledObjectRef=ref, metricName=metric_name(model))
        values = self._stub.GetMetrics(request, timeout=CALL_TIMEOUT).metricValues
        assert len(values) == 1
        return int(values[0].metricValue)

    def answers(self, *models: str) -> dict[str, int]:
        return {model: self.workers(model) for model in models}


def scaler_gauges(port: int, name: str) -> dict[str, float]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=3).text
    return {
        sample.labels.get("model", ""): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def settle(read: Callable[[], dict[str, int]], expected: dict[str, int]) -> None:
    """Poll the scaler until it answers `expected` (it reads the API every 0.2 s)."""
    stop = time.monotonic() + DEADLINE
    seen: dict[str, int] | str = {}
    while time.monotonic() < stop:
        try:
            seen = read()
        except grpc.RpcError as error:  # NOT_FOUND until the first read that has the model
            seen = str(error.code())
        if seen == expected:
            return
        time.sleep(0.05)  # polling with a deadline
    pytest.fail(f"the scaler answered {seen}, not {expected}, within {DEADLINE} s")


def test_two_models_share_a_budget_smaller_than_their_sum(platform: Platform) -> None:
    """Two scalers read the same API: one without preemption (the default), one with
    fair-share preemption. They share alike until a higher priority arrives on the model that
    has fewer workers."""
    urgent, bulk = platform.model("Urgent"), platform.model("Bulk")
    a, b = queue_name(urgent), queue_name(bulk)
    platform.queue_analyses(urgent, 4, priority=8)
    platform.queue_analyses(bulk, 6, priority=3)

    settings = ScalerSettings(
        host="127.0.0.1",
        port=0,
        metrics_port=0,
        scrape_targets=[f"{platform.url}/metrics"],
        interval_seconds=0.2,
        total_worker_limit=BUDGET,
    )
    fair_share = settings.model_copy(update={"budget_preemption": Preemption.FAIR_SHARE})
    with (
        running_scaler(settings) as scaler,
        running_scaler(fair_share) as preempting,
        grpc.insecure_channel(f"127.0.0.1:{scaler.port}") as ch,
        grpc.insecure_channel(f"127.0.0.1:{preempting.port}") as preempting_ch,
    ):
        keda, preempting_keda = Keda(ch), Keda(preempting_ch)
        # Each asks for one worker per analysis: 4 + 6 = 10, over the budget of 6. Both get
        # one; the rest goes to the higher priority until it has all it asked for.
        settle(lambda: keda.answers(a, b), {a: 4, b: 2})
        settle(lambda: preempting_keda.answers(a, b), {a: 4, b: 2})
        desired = scaler_gauges(scaler.metrics_port, "oasis_scaler_desired_workers")
        granted = scaler_gauges(scaler.metrics_port, "oasis_scaler_granted_workers")
        assert (desired[a], desired[b]) == (4, 6)
        assert (granted[a], granted[b]) == (4, 2)
        assert sum(keda.answers(a, b).values()) == BUDGET
        assert scaler_gauges(scaler.metrics_port, "oasis_scaler_worker_budget") == {"": BUDGET}

        # An analysis of priority 9 on the bulk model puts it first. With fair-share
        # preemption it gets all but the one worker the urgent model keeps (no model with work
        # starves), as the urgent model's workers have not started.
        platform.queue_analyses(bulk, 1, priority=9)
        settle(lambda: preempting_keda.answers(a, b), {a: 1, b: 5})
        answers = preempting_keda.answers(a, b)
        assert sum(answers.values()) == BUDGET
        desired = scaler_gauges(preempting.metrics_port, "oasis_scaler_desired_workers")
        assert all(answers[m] <= desired[m] for m in (a, b))
        floors_over = scaler_gauges(scaler.metrics_port, "oasis_scaler_worker_floors_over_budget")
        assert floors_over == {"": 0}
        # Without preemption the urgent model keeps the 4 it was granted (KEDA may be starting
        # them) while it wants them: once the default scaler has read the new analysis, its
        # answers have not moved.
        settle(lambda: desired_of(scaler, a, b), {a: 4, b: 7})
        assert keda.answers(a, b) == {a: 4, b: 2}


def desired_of(scaler: RunningScaler, *models: str) -> dict[str, int]:
    desired = scaler_gauges(scaler.metrics_port, "oasis_scaler_desired_workers")
    return {model: int(desired.get(model, -1)) for model in models}


def test_floors_above_the_budget_hold_and_are_reported(platform: Platform) -> None:
    warm = [platform.model("Warm"), platform.model("Warmer")]
    for model in warm:
        platform.client.models.scaling_configuration.post(
            model["id"], {**ONE_PER_ANALYSIS, "worker_count_min": 2}
        )
    names = [queue_name(model) for model in warm]
    settings = ScalerSettings(
        host="127.0.0.1",
        port=0,
        metrics_port=0,
        scrape_targets=[f"{platform.url}/metrics"],
        interval_seconds=0.2,
        total_worker_limit=3,
    )
    with (
        running_scaler(settings) as scaler,
        grpc.insecure_channel(f"127.0.0.1:{scaler.port}") as ch,
    ):
        keda = Keda(ch)
        settle(lambda: keda.answers(*names), dict.fromkeys(names, 2))
        floors_over = scaler_gauges(scaler.metrics_port, "oasis_scaler_worker_floors_over_budget")
        # The first test's models hold floors of 0; only these two add up to 4 against 3.
        assert floors_over == {"": 1}


def test_the_api_publishes_each_models_analyses_by_priority(platform: Platform) -> None:
    model = platform.model("Ranked")
    platform.queue_analyses(model, 2, priority=7)
    platform.queue_analyses(model, 1, priority=2)
    text = requests.get(f"{platform.url}/metrics", timeout=3).text
    published = {
        sample.labels["priority"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "oasis_model_analyses_by_priority"
        and sample.labels["model"] == queue_name(model)
    }
    assert published == {"7": 2, "2": 1}


LIVE_BUDGET = 3
LIVE_CHUNKING = {
    "lookup_strategy": "FIXED_CHUNKS",
    "fixed_lookup_chunks": 3,
    "loss_strategy": "FIXED_CHUNKS",
    "fixed_analysis_chunks": 6,
}


# Real kernel runs on the loaded machine, long enough that each model's workers are up while its
# chunks still wait.
@pytest.mark.timeout(900)
def test_live_workers_of_two_models_never_exceed_the_budget(
    tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    """The whole stack with real workers: two models that each want 3 workers share a budget of
    3, and a higher-priority analysis arrives while the first model's workers are busy. Without
    preemption (the default) they stay with the first model while its chunks wait; as it lets
    them go (between its stages, and at its end) they go over to the other, each only once it
    has left."""
    numba = numba_cache_root()
    env = {"OASIS_AUTOSCALER_SCALER_TOTAL_WORKER_LIMIT": str(LIVE_BUDGET)}
    scaling = {"scaling_strategy": "DYNAMIC_TASKS", "chunks_per_worker": 1, "worker_count_max": 3}
    with running_up(tmp_path, numba, env) as stack:
        (low, low_queue), (high, high_queue) = (
            new_model(stack, scaling, LIVE_CHUNKING) for _ in range(2)
        )
        client = stack.client()
        first = new_analysis(stack, low, work=LASTING_WORK)
        client.analyses.generate_and_run(first)
        answer_within(120, lambda: stack.workers(low_queue) == LIVE_BUDGET)
        urgent = new_analysis(stack, high, priority=9, work=LASTING_WORK)
        client.analyses.generate_and_run(urgent)
        most, high_workers = 0, 0
        stop = time.monotonic() + 900
        while {status(stack, a) for a in (first, urgent)} != {"RUN_COMPLETED"}:
            assert time.monotonic() < stop, "the analyses did not complete"
            gauges = stack.gauges("oasis_model_workers")
            live = [int(gauges.get(("oasis_model_workers", q), 0)) for q in (low_queue, high_queue)]
            most = max(most, sum(live))
            high_workers = max(high_workers, live[1])
            time.sleep(0.2)  # sampling while the runs go on
        assert most <= LIVE_BUDGET
        # The higher priority got workers (so the share did move) without the sum passing it.
        assert high_workers >= 2


def answer_within(deadline: float, check: Callable[[], bool]) -> None:
    stop = time.monotonic() + deadline
    while not check():
        assert time.monotonic() < stop, f"not within {deadline} s"
        time.sleep(0.1)  # polling with a deadline
