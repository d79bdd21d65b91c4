"""Every dashboard panel's PromQL, and every alert's, against a real Prometheus scraping the
real API and scaler.

The API (with Redis) publishes a registered model with queued work, sub-task activity recorded
as the workers record it, and its workers gauges; the scaler scrapes the API (and a dead second
target, so that failed scrapes have a series) and is called as KEDA calls it. Prometheus scrapes
both every second. Each panel query, with its template variables given concrete values, must
return data; each alert expression must be valid PromQL there.
"""

from __future__ import annotations

import json
import math
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests
import yaml
from redis import Redis

from protos import externalscaler_pb2 as pb
from protos import externalscaler_pb2_grpc as pb_grpc
from scaler.service import running_scaler
from scaler.servicer import metric_name
from scaler.settings import ScalerSettings
from tests.support.servers import api_server, free_port, prometheus_server, wait_until
from worker import activity
from worker.demo_model import demo_locations

pytestmark = pytest.mark.integration

MONITORING = Path(__file__).resolve().parents[2] / "manifests" / "monitoring"
DASHBOARDS = sorted((MONITORING / "dashboards").glob("*.json"))
# What Grafana puts in place of its variables; the window covers the whole test.
RATE_INTERVAL = "1m"
QUERY_DEADLINE = 120.0
ACTIVITY_PERIOD = 0.3


@dataclass(frozen=True)
class Stack:
    prometheus: str
    model: str


def panel_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, expression) of every target of every panel, rows' panels included."""
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                yield inner["title"], target["expr"]


def grafana_escape(value: str) -> str:
    """A variable's value in a regex matcher, escaped as Grafana's Prometheus data source does
    it: a backslash before regex syntax, itself escaped in the PromQL string."""
    value = value.replace("\\", "\\" * 4)
    return re.sub(r"[$^*{}\[\]'+?.()|]", lambda match: "\\\\" + match.group(0), value)


def concrete(expr: str, model: str) -> str:
    """The query Grafana sends with `model` selected."""
    text = expr.replace("$__rate_interval", RATE_INTERVAL)
    for variable in ("${model}", "$model"):
        text = text.replace(variable, grafana_escape(model))
    assert "$" not in text, f"a template variable no test gives a value: {expr}"
    return text


def alert_expressions() -> dict[str, str]:
    rule = yaml.safe_load((MONITORING / "prometheus-rules.yaml").read_text())
    return {
        entry["alert"]: entry["expr"]
        for group in rule["spec"]["groups"]
        for entry in group["rules"]
        if "alert" in entry
    }


def query(prometheus: str, expr: str) -> dict[str, Any]:
    reply = requests.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    body: dict[str, Any] = reply.json()
    return body


def has_data(body: dict[str, Any]) -> bool:
    """Success with at least one series whose value is a number (not NaN)."""
    if body.get("status") != "success":
        return False
    data = body["data"]
    samples = data["result"] if data["resultType"] == "vector" else []
    return any(math.isfinite(float(sample["value"][1])) for sample in samples)


class Api:
    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()
        token = self.http.post(
            f"{url}/access_token/", json={"username": "admin", "password": "secret-pw"}, timeout=10
        )
        token.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    def post(self, path: str, **kwargs: Any) -> Any:
        reply = self.http.post(self.url + path, timeout=10, **kwargs)
        assert reply.status_code in (200, 201), (path, reply.text)
        return reply.json()

    def queued_model(self) -> str:
        """A new model with one analysis queued for input generation; its queue name."""
        model = self.post(
            "/v2/models/",
            json={"supplier_id": f"M{uuid.uuid4().hex[:8]}", "model_id": "Mon", "version_id": "1"},
        )
        portfolio = self.post("/v2/portfolios/", json={"name": "p"})["id"]
        self.post(
            f"/v2/portfolios/{portfolio}/location_file/",
            files={"file": ("loc.csv", demo_locations(3).encode(), "text/csv")},
        )
        analysis = self.post(
            "/v2/analyses/", json={"name": "a", "portfolio": portfolio, "model": model["id"]}
        )["id"]
        self.post(f"/v2/analyses/{analysis}/generate_inputs/")
        return str(model["queue_name"])


def keep_busy(stop: threading.Event, redis: Redis, model: str, scaler_port: int) -> None:
    """Sub-task activity as the workers record it, and KEDA's calls, until `stop`: every rate
    in the panels has increases in its window."""
    ref = pb.ScaledObjectRef(name="workers", namespace="oasis", scalerMetadata={"model": model})
    with grpc.insecure_channel(f"127.0.0.1:{scaler_port}") as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        while not stop.is_set():
            for stage in activity.STAGES:
                activity.record(redis, model, stage, "QUEUED")
                activity.record(redis, model, stage, "STARTED")
                activity.record_completed(redis, model, stage, 4.0)
            activity.record(redis, model, "losses", "ERROR")
            request = pb.GetMetricsRequest(scaledObjectRef=ref, metricName=metric_name(model))
            stub.GetMetrics(request, timeout=3)
            stub.IsActive(ref, timeout=3)
            stop.wait(ACTIVITY_PERIOD)  # paces the activity; not waiting for a state


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("monitoring")
    redis = Redis.from_url(redis_url)
    stop = threading.Event()
    with api_server(folder / "data", database_url=None, redis_url=redis_url) as api_url:
        model = Api(api_url).queued_model()
        dead = f"http://127.0.0.1:{free_port()}/metrics"
        settings = ScalerSettings(
            host="127.0.0.1", port=0, metrics_port=0, scrape_targets=[f"{api_url}/metrics", dead]
        )
        with running_scaler(settings) as scaler:
            wait_until(lambda: scaler.view.get(model) is not None, "the scaler's first read")
            busy = threading.Thread(
                target=keep_busy, args=(stop, redis, model, scaler.port), daemon=True
            )
            busy.start()
            targets = [f"{api_url}/metrics", f"http://127.0.0.1:{scaler.metrics_port}/metrics"]
            try:
                with prometheus_server(folder / "prometheus", targets) as prometheus:
                    yield Stack(prometheus, model)
            finally:
                stop.set()
                busy.join(10)
    redis.close()


def test_the_model_variable_lists_the_model(stack: Stack) -> None:
    for path in DASHBOARDS:
        variables = json.loads(path.read_text())["templating"]["list"]
        model = next(v for v in variables if v["name"] == "model")
        series = re.fullmatch(r"label_values\((\w+), model\)", model["query"]["query"])
        assert series, f"{path.name}: {model['query']}"

        def listed(selector: str = series.group(1)) -> bool:
            reply = requests.get(
                f"{stack.prometheus}/api/v1/label/model/values",
                params={"match[]": selector},
                timeout=10,
            )
            return stack.model in reply.json()["data"]

        wait_until(listed, f"{path.name}: the model in its variable", deadline=QUERY_DEADLINE)


@pytest.mark.parametrize("path", DASHBOARDS, ids=[path.stem for path in DASHBOARDS])
def test_every_panel_query_returns_data(stack: Stack, path: Path) -> None:
    queries = list(panel_queries(json.loads(path.read_text())))
    assert queries
    pending = {(title, concrete(expr, stack.model)) for title, expr in queries}

    def all_answered() -> bool:
        for title, expr in list(pending):
            body = query(stack.prometheus, expr)
            if body["status"] != "success":
                pytest.fail(f"{path.name}, {title}: {expr}: {body}")
            if has_data(body):
                pending.remove((title, expr))
        return not pending

    try:
        wait_until(all_answered, f"{path.name}: every panel's data", deadline=QUERY_DEADLINE)
    except TimeoutError:
        answers = {expr: query(stack.prometheus, expr) for _, expr in pending}
        pytest.fail(f"{path.name}: panels without data: {json.dumps(answers, indent=1)}")


@pytest.mark.parametrize("alert", sorted(alert_expressions()))
def test_every_alert_expression_is_valid_promql(stack: Stack, alert: str) -> None:
    body = query(stack.prometheus, alert_expressions()[alert])
    assert body["status"] == "success", body
