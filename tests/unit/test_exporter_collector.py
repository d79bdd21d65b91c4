"""The exporter's families, read back the way the scaler reads them.

The captured OasisPlatform snapshot with the captured scaling configuration (DYNAMIC_TASKS, max 4,
min 1, chunks_per_worker 2) must give the replica count upstream's controller sets: 4.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from api.exporter.collector import SNAPSHOT_AGE, ExporterCollector
from api.exporter.service import configuration
from api.exporter.settings import ExporterSettings
from api.exporter.snapshot import QueueWork, Snapshot, snapshot
from api.exporter.state import Channel, ExporterState, PlatformModel, model_queue
from scaler.configuration import ScalingConfiguration, ScalingStrategy
from scaler.samples import build_states
from scaler.sources import text_samples

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "oasisplatform"
PIWIND = "OasisLMF-PiWind-1-v2"


def sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text())


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def scraped(state: ExporterState) -> str:
    registry = CollectorRegistry()
    ExporterCollector(state.view, registry=registry)
    return generate_latest(registry).decode()


def piwind_state(scaling: ScalingConfiguration, clock: Clock | None = None) -> ExporterState:
    state = ExporterState(clock=clock or Clock())
    model = sample("model_create.json") | {"run_mode": "V2"}
    state.set_models({model_queue(model): PlatformModel(1, model_queue(model), scaling)})
    return state


def test_the_captured_snapshot_gives_upstreams_replica_count() -> None:
    scaling = configuration(sample("scaling_configuration_post.json"), PIWIND)
    state = piwind_state(scaling)
    state.offer(
        snapshot(sample("queue-status_generate_inputs_queued_no_worker.json")), Channel.REST
    )
    built = build_states(text_samples(scraped(state)))
    assert built.problems == []
    assert set(built.states) == {PIWIND}
    piwind = built.states[PIWIND]
    assert (piwind.analyses, piwind.pending, piwind.priority) == (1, 8, 4)
    # Upstream's count (the analysis's sub_task_count) and what waits on the broker, published
    # for DYNAMIC_TASKS; the broker's consumers are the workers present.
    assert (piwind.sub_tasks, piwind.queued_or_running, piwind.workers) == (9, 8, 0)
    # None of them runs: all wait for a worker.
    assert piwind.queued == 8
    assert piwind.desired == 4


def test_idle_models_are_published_with_zeros_once_a_snapshot_is_held() -> None:
    state = piwind_state(ScalingConfiguration())
    assert build_states(text_samples(scraped(state))).states == {}
    state.offer(snapshot(sample("ws_initial_on_connect_idle.json")), Channel.WEBSOCKET)
    states = build_states(text_samples(scraped(state))).states
    assert states[PIWIND].desired == 0
    assert (states[PIWIND].analyses, states[PIWIND].pending, states[PIWIND].priority) == (
        0,
        0,
        None,
    )


def test_nothing_of_the_models_before_the_models_are_read() -> None:
    state = ExporterState(clock=Clock())
    state.offer(snapshot(sample("ws_push_beat_digest.json")), Channel.WEBSOCKET)
    assert build_states(text_samples(scraped(state))).states == {}


def test_the_age_gauge_grows_and_a_refused_message_changes_nothing_else() -> None:
    clock = Clock()
    state = piwind_state(ScalingConfiguration(), clock)
    state.offer(snapshot(sample("ws_push_beat_digest.json")), Channel.WEBSOCKET)
    before = build_states(text_samples(scraped(state))).states
    clock.now += 42
    state.refuse(Channel.WEBSOCKET)
    samples = text_samples(scraped(state))
    assert build_states(samples).states == before
    ages = [s.value for s in samples if s.name == SNAPSHOT_AGE]
    assert ages == [42.0]
    refused = {
        s.labels["channel"]: s.value for s in samples if s.name.endswith("refused_messages_total")
    }
    assert refused == {"websocket": 1.0, "rest": 0.0}


def at(time: str, pending: int) -> Snapshot:
    return Snapshot({"m-1": QueueWork(analyses=1, pending=pending)}, datetime.fromisoformat(time))


def test_an_older_rest_snapshot_arriving_late_is_not_kept() -> None:
    state = ExporterState(clock=Clock())
    assert state.offer(at("2026-12-05T18:28:00Z", 5), Channel.WEBSOCKET)
    assert not state.offer(at("2026-12-05T18:27:00Z", 9), Channel.REST)
    assert state.offer(at("2026-12-05T18:29:00Z", 0), Channel.REST)
    view = state.view()
    assert view.snapshot is not None and view.snapshot.work("M-1").pending == 0
    assert view.snapshots == {Channel.WEBSOCKET: 1, Channel.REST: 1}


def test_pushes_are_kept_in_their_order_of_arrival() -> None:
    """One connection delivers in order; a platform clock set back must not freeze the state."""
    state = ExporterState(clock=Clock())
    assert state.offer(at("2026-12-05T18:28:00Z", 5), Channel.WEBSOCKET)
    assert state.offer(at("2026-12-05T18:27:00Z", 0), Channel.WEBSOCKET)
    view = state.view()
    assert view.snapshot is not None and view.snapshot.work("M-1").pending == 0


MODELS = [
    pytest.param(
        {"supplier_id": "OasisLMF", "model_id": "PiWind", "version_id": "1", "run_mode": "V2"},
        "OasisLMF-PiWind-1-v2",
        id="v2 model",
    ),
    pytest.param(
        {"supplier_id": "OasisLMF", "model_id": "PiWind", "version_id": "1", "run_mode": None},
        "OasisLMF-PiWind-1",
        id="run mode not set",
    ),
    pytest.param(
        {"supplier_id": "S", "model_id": "M", "version_id": "1", "run_mode": "V1"},
        "S-M-1",
        id="v1 model",
    ),
    pytest.param(
        {
            "supplier_id": "S",
            "model_id": "M",
            "version_id": "1",
            "run_mode": "V2",
            "queue_name": "S-M-1",
        },
        "S-M-1",
        id="a queue_name field wins (our API)",
    ),
]


@pytest.mark.parametrize(("model", "queue"), MODELS)
def test_model_queue(model: dict[str, Any], queue: str) -> None:
    assert model_queue(model) == queue


CONFIGURATIONS = [
    pytest.param(
        {"scaling_strategy": "QUEUE_LOAD", "worker_count_max": 5, "unknown": 1},
        ScalingConfiguration(scaling_strategy=ScalingStrategy.QUEUE_LOAD, worker_count_max=5),
        id="an unknown field is ignored",
    ),
    pytest.param(
        {"scaling_strategy": "DYNAMIC_TASKS", "chunks_per_worker": None},
        ScalingConfiguration(scaling_strategy=ScalingStrategy.DYNAMIC_TASKS),
        id="null reads as the default",
    ),
    pytest.param(
        {"scaling_strategy": "FIXED_WORKERS", "worker_count_min": 5, "worker_count_max": 2},
        ScalingConfiguration(),
        id="invalid: the defaults",
    ),
    pytest.param("not an object", ScalingConfiguration(), id="not an object: the defaults"),
    pytest.param(
        json.loads((SAMPLES / "scaling_configuration_default.json").read_text()),
        ScalingConfiguration(),
        id="the platform's default is ours",
    ),
]


@pytest.mark.parametrize(("body", "expected"), CONFIGURATIONS)
def test_scaling_configuration_read(body: object, expected: ScalingConfiguration) -> None:
    assert configuration(body, "M-1") == expected


SETTINGS = [
    pytest.param(
        {"platform_url": "http://oasis:8000/api/"},
        "ws://oasis:8000/ws/v2/queue-status/",
        id="http: ws on the host, prefix dropped",
    ),
    pytest.param(
        {"platform_url": "https://oasis.example.com"},
        "wss://oasis.example.com/ws/v2/queue-status/",
        id="https: wss",
    ),
    pytest.param(
        {"platform_url": "http://a", "websocket_url": "ws://b:8001/ws/v2/queue-status/"},
        "ws://b:8001/ws/v2/queue-status/",
        id="given",
    ),
    pytest.param({"platform_url": "http://a", "websocket_url": ""}, None, id="empty: off"),
]


@pytest.mark.parametrize(("given", "websocket"), SETTINGS)
def test_websocket_url(given: dict[str, Any], websocket: str | None) -> None:
    assert ExporterSettings(**given).effective_websocket_url == websocket


REFUSED_SETTINGS = [
    pytest.param({"platform_url": "oasis:8000"}, "platform_url", id="no scheme"),
    pytest.param(
        {"platform_url": "http://a", "websocket_url": "http://b"},
        "websocket_url",
        id="websocket not ws",
    ),
    pytest.param({"platform_url": "http://a", "username": "u"}, "password", id="no password"),
    pytest.param(
        {"platform_url": "http://a", "username": "u", "password": "p", "password_file": "/x"},
        "not both",
        id="password twice",
    ),
    pytest.param({"platform_url": "http://a", "port": 70000}, "port", id="port"),
    pytest.param({}, "platform_url", id="no platform"),
]


@pytest.mark.parametrize(("given", "says"), REFUSED_SETTINGS)
def test_settings_refused(
    given: dict[str, Any], says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match=says):
        ExporterSettings(**given)


def test_password_from_a_file_read_at_login(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "password"
    secret.write_text("first\n")
    monkeypatch.setenv("OASIS_AUTOSCALER_EXPORTER_PLATFORM_URL", "http://oasis:8000")
    monkeypatch.setenv("OASIS_AUTOSCALER_EXPORTER_USERNAME", "admin")
    monkeypatch.setenv("OASIS_AUTOSCALER_EXPORTER_PASSWORD_FILE", str(secret))
    settings = ExporterSettings()
    assert settings.login() == {"username": "admin", "password": "first"}
    secret.write_text("rotated")
    assert settings.login() == {"username": "admin", "password": "rotated"}


def test_time_zones_mixed_do_not_break_ordering() -> None:
    state = ExporterState(clock=Clock())
    state.offer(Snapshot({}, datetime(2026, 12, 5, tzinfo=UTC)), Channel.REST)
    assert state.offer(Snapshot({}, datetime(2026, 12, 4)), Channel.REST)


def test_oidc_client_credentials(tmp_path: Path) -> None:
    secret = tmp_path / "client-secret"
    secret.write_text("s3cret\n")
    settings = ExporterSettings(
        platform_url="http://oasis:8000", client_id="oasis-service", client_secret_file=secret
    )
    assert settings.login() == {"client_id": "oasis-service", "client_secret": "s3cret"}
    assert ExporterSettings(platform_url="http://oasis:8000").login() is None


def test_a_new_snapshot_or_new_models_show_on_the_next_scrape() -> None:
    state = piwind_state(ScalingConfiguration())
    state.offer(snapshot(sample("ws_initial_on_connect_idle.json")), Channel.WEBSOCKET)
    registry = CollectorRegistry()
    ExporterCollector(state.view, registry=registry)

    def read() -> tuple[float | None, float | None]:
        labels = {"model": PIWIND}
        return (
            registry.get_sample_value("oasis_model_pending_sub_tasks", labels),
            registry.get_sample_value("oasis_model_worker_count_max", labels),
        )

    assert read() == (0, 10)
    assert read() == (0, 10)  # the same state: the families are reused
    state.offer(snapshot(sample("ws_push_beat_digest.json")), Channel.WEBSOCKET)
    assert read() == (8, 10)
    scaling = ScalingConfiguration(worker_count_max=4)
    state.set_models({PIWIND: PlatformModel(1, PIWIND, scaling)})
    assert read() == (8, 4)


def test_a_queue_of_no_known_model_asks_for_the_models_once() -> None:
    from api.exporter.platform import PlatformClient
    from api.exporter.service import Exporter

    settings = ExporterSettings(platform_url="http://127.0.0.1:9")
    client = PlatformClient(settings.platform_url, login=lambda: None, timeout=1)
    exporter = Exporter(settings, client, ExporterState(clock=Clock()))
    exporter.notice(["new-1-v2"])
    assert not exporter.models_wanted.is_set(), "no models read yet: the first read comes"
    exporter.state.set_models({PIWIND: PlatformModel(1, PIWIND, ScalingConfiguration())})
    exporter.notice([PIWIND.lower()])
    assert not exporter.models_wanted.is_set()
    exporter.notice([PIWIND.lower(), "new-1-v2"])
    assert exporter.models_wanted.is_set()
    exporter.models_wanted.clear()
    exporter.notice(["new-1-v2"])
    assert not exporter.models_wanted.is_set(), "a queue that stays unknown asks once"
