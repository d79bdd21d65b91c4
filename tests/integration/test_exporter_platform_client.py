"""The exporter's REST client against the stand-in platform over real HTTP: the path prefix,
login, renewal at a fraction of the token's lifetime, a revoked token, refused credentials."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.exporter.platform import PlatformClient, PlatformError, TokenRefused
from api.exporter.service import read_models
from api.exporter.snapshot import parse
from tests.support.oasis_platform import PREFIX, StandInPlatform, stand_in_platform

pytestmark = pytest.mark.integration
SAMPLES = Path(__file__).resolve().parents[1] / "data" / "oasisplatform"
LIFETIME = 100


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def platform() -> Iterator[StandInPlatform]:
    model = json.loads((SAMPLES / "model_create.json").read_text()) | {"run_mode": "V2"}
    scaling = json.loads((SAMPLES / "scaling_configuration_post.json").read_text())
    with stand_in_platform(
        models=[model],
        scaling={1: scaling},
        snapshot=(SAMPLES / "ws_push_beat_digest.json").read_text(),
        token_lifetime=LIFETIME,
    ) as started:
        yield started


def client_of(
    platform: StandInPlatform, clock: Clock, password: str | None = None
) -> PlatformClient:
    return PlatformClient(
        platform.rest_url,
        login=lambda: {"username": platform.username, "password": password or platform.password},
        timeout=5,
        renew_fraction=0.5,
        clock=clock,
    )


def test_reads_under_the_prefix(platform: StandInPlatform) -> None:
    client = client_of(platform, Clock())
    assert client.base_url.endswith(PREFIX)
    models = read_models(client, None)
    assert list(models) == ["oasislmf-piwind-1-v2"]
    assert models["oasislmf-piwind-1-v2"].scaling.worker_count_max == 4
    assert parse(client.queue_status()).work("OasisLMF-PiWind-1-v2").pending == 8


def test_without_the_prefix_a_clear_error(platform: StandInPlatform) -> None:
    client = PlatformClient(
        platform.rest_url.removesuffix(PREFIX),
        login=lambda: {"username": platform.username, "password": platform.password},
        timeout=5,
    )
    with pytest.raises(PlatformError, match="access_token/: HTTP 404"):
        client.models()


def test_the_token_is_renewed_at_half_its_lifetime(platform: StandInPlatform) -> None:
    clock = Clock()
    client = client_of(platform, clock)
    first = client.token()
    logins = platform.logins
    clock.now = LIFETIME * 0.5 - 1
    assert client.token() == first
    assert platform.logins == logins
    clock.now = LIFETIME * 0.5
    assert client.token() != first
    assert platform.logins == logins + 1


def test_a_revoked_token_logs_in_again_once(platform: StandInPlatform) -> None:
    client = client_of(platform, Clock())
    client.models()
    logins = platform.logins
    platform.revoke_tokens()
    assert client.models()
    assert platform.logins == logins + 1


def test_refused_credentials(platform: StandInPlatform) -> None:
    client = client_of(platform, Clock(), password="wrong")
    with pytest.raises(TokenRefused, match="refused the credentials"):
        client.queue_status()
