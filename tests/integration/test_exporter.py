"""The exporter in a real process over a stand-in OasisPlatform, the scaler scraping it, and a
KEDA-shaped client reading the answers.

The stand-in (tests/support/oasis_platform.py) replays the messages captured from a running
OasisPlatform 2.5.6 on its websocket, and drops the connection, sends garbage and partial
messages, revokes the tokens and refuses logins. Every fault must change nothing KEDA sees (the
last good snapshot holds, only its age grows), and the exporter must recover alone.

The REST resync is set to a minute, so what changes within a test comes from the websocket.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests

from cli.keda.client import Answer, KedaClient
from scaler.sources import text_samples
from tests.support.oasis_platform import StandInPlatform, stand_in_platform
from tests.support.polling import poll as poll_until
from tests.support.servers import exporter_server, scaler_server, wait_until

pytestmark = pytest.mark.integration
SAMPLES = Path(__file__).resolve().parents[1] / "data" / "oasisplatform"
PIWIND = "OasisLMF-PiWind-1-v2"
DEADLINE = 20.0
FAST = {
    "OASIS_AUTOSCALER_EXPORTER_RESYNC_SECONDS": "60",
    "OASIS_AUTOSCALER_EXPORTER_BACKOFF_INITIAL_SECONDS": "0.2",
    "OASIS_AUTOSCALER_EXPORTER_BACKOFF_MAX_SECONDS": "1",
}


def text(name: str) -> str:
    return (SAMPLES / name).read_text()


IDLE = text("ws_initial_on_connect_idle.json")
AFTER_CREATE = text("ws_push_after_create_statuses.json")
DIGEST = text("ws_push_beat_digest.json")
PIWIND_MODEL = json.loads(text("model_create.json")) | {"run_mode": "V2"}


@dataclass
class Stack:
    platform: StandInPlatform
    exporter_url: str
    keda: KedaClient
    exporter_alive: Callable[[], bool]

    def metrics(self) -> dict[str, float]:
        """The exporter's own samples, by name and labels."""
        answer = requests.get(f"{self.exporter_url}/metrics", timeout=5)
        answer.raise_for_status()
        found = {}
        for sample in text_samples(answer.text):
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return found

    def answer(self) -> Answer:
        return self.keda.ask(PIWIND)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("exporter")
    with ExitStack() as stack:
        platform = stack.enter_context(
            stand_in_platform(
                models=[PIWIND_MODEL],
                scaling={1: json.loads(text("scaling_configuration_post.json"))},
                snapshot=IDLE,
            )
        )
        exporter_url, exporter = stack.enter_context(
            exporter_server(
                root,
                platform_url=platform.rest_url,
                websocket_url=platform.websocket_url,
                username=platform.username,
                password=platform.password,
                env=FAST,
            )
        )
        wait_until(
            lambda: requests.get(f"{exporter_url}/healthz", timeout=1).ok, "the exporter ready"
        )
        address, _ = stack.enter_context(
            scaler_server(root, [f"{exporter_url}/metrics"], max_age_seconds=60)
        )
        keda = KedaClient(address)
        stack.callback(keda.close)
        built = Stack(platform, exporter_url, keda, lambda: exporter.poll() is None)
        poll(lambda: built.answer() == Answer(True, 1.0), "the idle answer (worker_count_min 1)")
        yield built
        assert built.exporter_alive(), "the exporter exited"


def test_pushes_drive_keda_answers_to_upstreams_count(stack: Stack) -> None:
    # DYNAMIC_TASKS, max 4, min 1, 2 chunks per worker (the captured configuration).
    stack.platform.push(AFTER_CREATE)  # the analysis listed under celery-v2 only: 1 main task
    poll(lambda: stack.answer() == Answer(True, 1.0), "one worker for the split")
    stack.platform.set_snapshot(DIGEST)
    stack.platform.push(DIGEST)  # 8 sub-tasks pending on the model's queue -> 4
    poll(lambda: stack.answer() == Answer(True, 4.0), "4 workers, as upstream's controller")
    metrics = stack.metrics()
    assert metrics["oasis_model_analyses{model=OasisLMF-PiWind-1-v2}"] == 1
    assert metrics["oasis_model_pending_sub_tasks{model=OasisLMF-PiWind-1-v2}"] == 8
    assert metrics["oasis_model_queue_messages{model=OasisLMF-PiWind-1-v2}"] == 1
    assert metrics["oasis_model_analyses_by_priority{model=OasisLMF-PiWind-1-v2,priority=4}"] == 1
    assert metrics["oasis_model_scaling_info{model=OasisLMF-PiWind-1-v2,strategy=DYNAMIC_TASKS}"]


def test_garbage_and_partial_messages_change_nothing_but_the_counters(stack: Stack) -> None:
    stack.platform.set_snapshot(DIGEST)
    stack.platform.push(DIGEST)
    poll(lambda: stack.answer() == Answer(True, 4.0), "4 workers")
    before = stack.metrics()
    partial = json.loads(DIGEST)
    del partial["content"][0]["queue"]["pending_count"]  # the model's entry cut
    idle_but_cut = json.loads(IDLE)
    del idle_but_cut["content"][1]["analyses"]
    for garbage in (b"\x00\xff not json", "{", json.dumps(partial), json.dumps(idle_but_cut)):
        stack.platform.push(garbage)
    refused = "oasis_exporter_refused_messages_total{channel=websocket}"
    poll(lambda: stack.metrics()[refused] == before[refused] + 4, "four messages refused")
    after = stack.metrics()
    assert stack.answer() == Answer(True, 4.0)
    assert (
        after["oasis_exporter_websocket_connections_total"]
        == (before["oasis_exporter_websocket_connections_total"])
    ), "garbage must not close the websocket"
    assert after["oasis_exporter_websocket_connected"] == 1
    for name, value in before.items():
        if name.startswith("oasis_model_"):
            assert after[name] == value, name


def test_a_dropped_websocket_reconnects_and_keeps_the_answer(stack: Stack) -> None:
    connections = "oasis_exporter_websocket_connections_total"
    before = stack.metrics()[connections]
    stack.platform.set_snapshot(DIGEST)
    stack.platform.drop()
    assert stack.answer() == Answer(True, 4.0)
    poll(lambda: stack.metrics()[connections] > before, "a new websocket connection")
    poll(lambda: stack.platform.open_sockets() == 1, "one open websocket")
    assert stack.answer() == Answer(True, 4.0)


def test_revoked_tokens_are_renewed_by_logging_in_again(stack: Stack) -> None:
    logins = stack.platform.logins
    stack.platform.revoke_tokens()
    stack.platform.drop()
    poll(lambda: stack.platform.logins > logins, "a new login")
    poll(lambda: stack.platform.open_sockets() == 1, "the websocket open again")
    assert stack.answer() == Answer(True, 4.0)


def test_logins_refused_keep_the_last_snapshot_and_age_it(stack: Stack) -> None:
    age = "oasis_exporter_snapshot_age_seconds"
    stack.platform.refuse_logins(refuse=True)
    try:
        stack.platform.revoke_tokens()
        stack.platform.drop()
        poll(lambda: stack.metrics()["oasis_exporter_websocket_connected"] == 0, "disconnected")
        first = stack.metrics()[age]
        poll(lambda: stack.metrics()[age] >= first + 1, "the age to grow")
        assert stack.answer() == Answer(True, 4.0)
        assert stack.platform.open_sockets() == 0
    finally:
        stack.platform.refuse_logins(refuse=False)
    poll(lambda: stack.platform.open_sockets() == 1, "the websocket open again")
    poll(lambda: stack.metrics()[age] < 5, "a fresh snapshot")


def test_a_model_created_since_is_read_at_its_first_snapshot(stack: Stack) -> None:
    """The models refresh is a minute away; a snapshot naming the new model's queue asks now."""
    model = PIWIND_MODEL | {"id": 2, "model_id": "Quake"}
    stack.platform.add_model(model, {"scaling_strategy": "QUEUE_LOAD", "worker_count_max": 3})
    queue = "OasisLMF-Quake-1-v2"
    digest = json.loads(DIGEST)
    entry = json.loads(json.dumps(digest["content"][0]))
    entry["queue"]["name"] = queue
    entry["analyses"][0]["analysis"] |= {"id": 2, "queue_names": [queue]}
    digest["content"].append(entry)
    stack.platform.set_snapshot(json.dumps(digest))
    stack.platform.push(json.dumps(digest))
    poll(lambda: stack.keda.ask(queue) == Answer(True, 1.0), "the new model's one analysis")
    assert stack.answer() == Answer(True, 4.0)
    stack.platform.set_snapshot(DIGEST)
    stack.platform.push(DIGEST)
    poll(lambda: stack.keda.ask(queue) == Answer(False, 0.0), "the new model idle")


def test_done_goes_back_to_idle(stack: Stack) -> None:
    stack.platform.set_snapshot(IDLE)
    stack.platform.push(IDLE)
    poll(lambda: stack.answer() == Answer(True, 1.0), "worker_count_min again")
    metrics = stack.metrics()
    assert metrics["oasis_model_analyses{model=OasisLMF-PiWind-1-v2}"] == 0
    assert not any(name.startswith("oasis_model_analyses_by_priority") for name in metrics)


def test_health_and_metrics_refused_before_the_platform_is_read(tmp_path: Path) -> None:
    with (
        stand_in_platform(models=[PIWIND_MODEL], scaling={}, snapshot=IDLE) as platform,
        exporter_server(
            tmp_path,
            platform_url=platform.rest_url,
            websocket_url=platform.websocket_url,
            username=platform.username,
            password="wrong",
            env=FAST,
        ) as (url, process),
    ):
        poll(lambda: platform.logins >= 2, "the exporter trying to log in, again")
        for path in ("/healthz", "/metrics"):
            answer = requests.get(url + path, timeout=5)
            assert answer.status_code == 503, path
            body: dict[str, Any] = answer.json()
            assert body["ready"] is False and body["platform_up"] is False
        assert process.poll() is None


def test_a_snapshot_too_old_turns_to_unavailable_then_recovers(tmp_path: Path) -> None:
    """Past max_snapshot_age_seconds the exporter answers 503, the scaler's own max age runs out
    and KEDA gets UNAVAILABLE (its fallback applies), never a frozen count; back when the
    platform is."""
    # The REST resync keeps the snapshot fresh until the platform refuses the exporter.
    env = FAST | {
        "OASIS_AUTOSCALER_EXPORTER_MAX_SNAPSHOT_AGE_SECONDS": "2",
        "OASIS_AUTOSCALER_EXPORTER_RESYNC_SECONDS": "0.3",
    }
    scaling = {1: json.loads(text("scaling_configuration_post.json"))}
    with (
        stand_in_platform(models=[PIWIND_MODEL], scaling=scaling, snapshot=DIGEST) as platform,
        exporter_server(
            tmp_path,
            platform_url=platform.rest_url,
            websocket_url=platform.websocket_url,
            username=platform.username,
            password=platform.password,
            env=env,
        ) as (url, process),
        scaler_server(tmp_path, [f"{url}/metrics"], max_age_seconds=2) as (address, _),
    ):
        keda = KedaClient(address)
        try:
            poll(lambda: keda.ask(PIWIND) == Answer(True, 4.0), "4 workers")
            platform.refuse_logins(refuse=True)
            platform.revoke_tokens()
            platform.drop()
            poll(lambda: requests.get(f"{url}/metrics", timeout=5).status_code == 503, "503")

            def unavailable() -> bool:
                try:
                    keda.ask(PIWIND)
                except grpc.RpcError as error:
                    return bool(error.code() == grpc.StatusCode.UNAVAILABLE)
                return False

            poll(unavailable, "UNAVAILABLE from the scaler")
            platform.refuse_logins(refuse=False)
            poll(lambda: keda.ask(PIWIND) == Answer(True, 4.0), "4 workers again")
            assert process.poll() is None
        finally:
            keda.close()


def poll(check: Callable[[], bool], what: str) -> None:
    """A call failing while the state settles is asked again."""
    poll_until(check, what, DEADLINE, ignoring=(Exception,))
