"""The scaler service's settings: one typed object, from `OASIS_AUTOSCALER_SCALER_*` and flags.

The prefix has `SCALER_` in it because the scaler often shares an environment with the API and
the local stack, whose `OASIS_AUTOSCALER_HOST` / `_PORT` mean their own addresses.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, Field, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from scaler.budget import Preemption
from scaler.configuration import INT32_MAX

ENV_PREFIX = "OASIS_AUTOSCALER_SCALER_"


class SourceKind(StrEnum):
    # Scrape the publishers' /metrics directly (no Prometheus needed, freshest numbers).
    SCRAPE = "scrape"
    # Ask a Prometheus server with PromQL (one place to read from, as the dashboards do).
    PROMETHEUS = "prometheus"


def url_list(value: object) -> object:
    """An environment variable holds a JSON list or URLs separated by commas or spaces."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part for part in text.replace(",", " ").split() if part]
    return value


Urls = Annotated[list[str], NoDecode, BeforeValidator(url_list), Field(min_length=1)]
Weight = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class ScalerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    # The gRPC address KEDA calls (the ScaledObject's `scalerAddress`).
    host: str = "127.0.0.1"
    port: int = Field(default=9090, ge=0, le=65535)
    # The scaler's own Prometheus metrics, on host:metrics_port.
    metrics_port: int = Field(default=9091, ge=0, le=65535)
    source: SourceKind = SourceKind.SCRAPE
    # The publishers' /metrics (API replicas sharing one database; merged, see scaler.samples).
    scrape_targets: Urls = ["http://127.0.0.1:8000/metrics"]
    # Base URL of the Prometheus server the `prometheus` source queries.
    prometheus_url: str | None = None
    # How often the source is read (scraped or queried).
    interval_seconds: float = Field(default=0.5, gt=0)
    # Per HTTP request to the source; unset: half the interval, so a hung target cannot stall
    # the refreshes behind it.
    timeout_seconds: float | None = Field(default=None, gt=0)
    # Calls are answered from the last good state up to this age, then fail with UNAVAILABLE so
    # that KEDA's fallback applies instead of a frozen answer.
    max_age_seconds: float = Field(default=30.0, gt=0)
    # Each open StreamIsActive holds one thread, so this bounds the push triggers served at once.
    grpc_threads: int = Field(default=256, ge=1)
    # TLS: the server's certificate chain and key (PEM). With a client CA, every client must
    # present a certificate it signed (KEDA: TriggerAuthentication caCert/tlsClientCert/Key).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None
    # The fleet budget (docs/budget.md): all models' workers together; unset, no budget.
    total_worker_limit: int | None = Field(default=None, ge=0, le=INT32_MAX)
    # Each model's weight in the budget's fair share, by queue name (JSON object); default 1.
    model_weights: dict[str, Weight] = Field(default_factory=dict)
    # What a higher priority may take of the workers other models have (docs/budget.md, rule 5).
    budget_preemption: Preemption = Preemption.NONE
    # Seconds from asking for a worker to its taking work (a pod's scheduling, image and start):
    # DYNAMIC_TASKS keeps an input stage's workers through its join when the model's last gap
    # between stages was shorter (README, "Scaling"); 0 keeps none.
    worker_start_seconds: float = Field(default=30.0, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _consistent(self) -> ScalerSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together: set both or neither")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file needs tls_cert_file and tls_key_file")
        if self.source is SourceKind.PROMETHEUS and not self.prometheus_url:
            raise ValueError(
                f"source 'prometheus' needs prometheus_url ({ENV_PREFIX}PROMETHEUS_URL or "
                "--prometheus-url), e.g. http://prometheus:9090"
            )
        return self

    @property
    def effective_timeout_seconds(self) -> float:
        return self.timeout_seconds or self.interval_seconds / 2

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None
