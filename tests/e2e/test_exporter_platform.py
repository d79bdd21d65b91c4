"""The exporter pointed at our own running API, read through its REST queue status only.

Work queued through the real OasisPlatform client must make a scaler fed by the exporter active
with the same desired count as a scaler scraping the API's own metrics; once a real worker has
done the work, both go back to idle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
import requests

from cli.keda.client import Answer, KedaClient
from tests.e2e.conftest import PASSWORD, Stack
from tests.support.polling import poll as poll_until
from tests.support.servers import exporter_server, scaler_server, wait_until

pytestmark = pytest.mark.e2e
DEADLINE = 60.0
CHUNKING = {"lookup_strategy": "FIXED_CHUNKS", "fixed_lookup_chunks": 2}
# The REST queue status is all there is (our API has no websocket): read it often.
FAST = {
    "OASIS_AUTOSCALER_EXPORTER_RESYNC_SECONDS": "0.5",
    "OASIS_AUTOSCALER_EXPORTER_MODELS_REFRESH_SECONDS": "1",
    "OASIS_AUTOSCALER_EXPORTER_BACKOFF_INITIAL_SECONDS": "0.2",
}


@pytest.fixture(scope="module")
def scalers(stack: Stack) -> Iterator[tuple[KedaClient, KedaClient]]:
    """(a scaler fed by the exporter, a scaler scraping the API itself)."""
    with ExitStack() as started:
        exporter_url, _ = started.enter_context(
            exporter_server(
                stack.root,
                platform_url=stack.api_url,
                websocket_url="",
                username="admin",
                password=PASSWORD,
                env=FAST,
            )
        )
        wait_until(lambda: requests.get(f"{exporter_url}/healthz", timeout=1).ok, "the exporter")
        via_exporter, _ = started.enter_context(
            scaler_server(stack.root, [f"{exporter_url}/metrics"])
        )
        direct, _ = started.enter_context(scaler_server(stack.root, [f"{stack.api_url}/metrics"]))
        clients = KedaClient(via_exporter), KedaClient(direct)
        for client in clients:
            started.callback(client.close)
        yield clients


def test_queued_work_scales_as_our_own_metrics_say_then_idle(
    stack: Stack,
    new_model: Callable[[dict[str, Any]], dict[str, Any]],
    new_analysis: Callable[..., int],
    scalers: tuple[KedaClient, KedaClient],
) -> None:
    via_exporter, direct = scalers
    model = new_model(CHUNKING)
    queue = model["queue_name"]
    client = stack.client()
    client.models.scaling_configuration.post(
        model["id"], {"scaling_strategy": "QUEUE_LOAD", "worker_count_max": 5}
    )
    poll(lambda: via_exporter.ask(queue) == Answer(False, 0.0), "the new model known and idle")

    analyses = [new_analysis(model) for _ in range(2)]
    for analysis in analyses:
        client.analyses.generate(analysis)
    # Two main tasks queued, no worker yet: QUEUE_LOAD asks for 2.
    poll(lambda: via_exporter.ask(queue) == Answer(True, 2.0), "2 workers via the exporter")
    # Each scaler reads its source on a timer of its own: the direct one may not have read yet.
    # Nothing runs the work until a worker starts below, so both stay at 2 once there.
    poll(lambda: direct.ask(queue) == Answer(True, 2.0), "2 workers via the API's metrics")

    with stack.worker(queue):
        poll(
            lambda: all(client.analyses.status(a) == "READY" for a in analyses),
            "both analyses' inputs generated",
            deadline=300,
        )
        poll(lambda: via_exporter.ask(queue) == Answer(False, 0.0), "idle via the exporter")
        poll(lambda: direct.ask(queue) == Answer(False, 0.0), "idle via the API's metrics", 10)


def poll(check: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
    """A call failing while a process settles is asked again."""
    poll_until(check, what, deadline, ignoring=(Exception,))
