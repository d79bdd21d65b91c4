"""The scaler's settings: defaults, OASIS_AUTOSCALER_SCALER_* variables, flags over them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from cli.main import build_parser
from scaler.settings import ScalerSettings, SourceKind


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("OASIS_AUTOSCALER_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    settings = ScalerSettings()
    assert (settings.host, settings.port, settings.metrics_port) == ("127.0.0.1", 9090, 9091)
    assert settings.source is SourceKind.SCRAPE
    assert settings.scrape_targets == ["http://127.0.0.1:8000/metrics"]
    assert (settings.interval_seconds, settings.max_age_seconds) == (0.5, 30.0)
    assert settings.effective_timeout_seconds == 0.25
    assert settings.grpc_threads == 256
    assert settings.worker_start_seconds == 30.0
    assert not settings.tls


@pytest.mark.parametrize(
    ("value", "targets"),
    [
        ("http://a:8000/metrics", ["http://a:8000/metrics"]),
        ("http://a/metrics, http://b/metrics", ["http://a/metrics", "http://b/metrics"]),
        ("http://a/metrics http://b/metrics", ["http://a/metrics", "http://b/metrics"]),
        ('["http://a/metrics", "http://b/metrics"]', ["http://a/metrics", "http://b/metrics"]),
    ],
    ids=["one", "commas", "spaces", "json"],
)
def test_scrape_targets_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, targets: list[str]
) -> None:
    monkeypatch.setenv("OASIS_AUTOSCALER_SCALER_SCRAPE_TARGETS", value)
    assert ScalerSettings().scrape_targets == targets


def test_the_prefix_keeps_the_api_port_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OASIS_AUTOSCALER_PORT", "8000")  # the API's
    monkeypatch.setenv("OASIS_AUTOSCALER_SCALER_PORT", "7000")
    monkeypatch.setenv("OASIS_AUTOSCALER_SCALER_MAX_AGE_SECONDS", "12.5")
    monkeypatch.setenv("OASIS_AUTOSCALER_SCALER_WORKER_START_SECONDS", "45")
    settings = ScalerSettings()
    assert (settings.port, settings.max_age_seconds) == (7000, 12.5)
    assert settings.worker_start_seconds == 45.0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"tls_cert_file": "c.pem"}, "tls_cert_file and tls_key_file go together"),
        ({"tls_client_ca_file": "ca.pem"}, "tls_client_ca_file needs tls_cert_file"),
        ({"source": "prometheus"}, "needs prometheus_url"),
        ({"source": "graphite"}, "'scrape' or 'prometheus'"),
        ({"scrape_targets": []}, "at least 1 item"),
        ({"interval_seconds": 0}, "greater than 0"),
        ({"port": 70000}, "less than or equal to 65535"),
        ({"worker_start_seconds": -1}, "greater than or equal to 0"),
        ({"worker_start_seconds": "nan"}, "finite number"),
    ],
    ids=[
        "cert without key",
        "CA without cert",
        "prometheus without URL",
        "unknown source",
        "no targets",
        "zero interval",
        "port",
        "negative worker start",
        "worker start not a number",
    ],
)
def test_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ScalerSettings(**fields)


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.commands.scaler import FLAGS

    monkeypatch.setenv("OASIS_AUTOSCALER_SCALER_PORT", "7000")
    monkeypatch.setenv("OASIS_AUTOSCALER_SCALER_INTERVAL_SECONDS", "2")
    args = build_parser().parse_args(
        [
            "scaler",
            "--port",
            "7001",
            "--scrape-target",
            "http://a/m",
            "--scrape-target",
            "http://b/m",
            "--tls-cert-file",
            "c.pem",
            "--tls-key-file",
            "k.pem",
        ]
    )
    names = [*FLAGS, "scrape_targets"]
    settings = ScalerSettings(
        **{name: getattr(args, name) for name in names if getattr(args, name) is not None}
    )
    assert settings.port == 7001
    assert settings.interval_seconds == 2
    assert settings.scrape_targets == ["http://a/m", "http://b/m"]
    assert settings.tls_cert_file == Path("c.pem") and settings.tls
