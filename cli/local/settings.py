"""The local stack's settings: one typed object, from `OASIS_AUTOSCALER_*` and CLI flags."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from cli.keda.timing import SCALE_DOWN_STABILIZATION_SECONDS, KedaTiming


class StackSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="OASIS_AUTOSCALER_", extra="ignore", populate_by_name=True
    )

    data_dir: Path = Path.home() / ".local" / "share" / "oasis-autoscaler"
    host: str = "127.0.0.1"
    # Every port `up` opens. Unset: the usual one (API 8000, scaler 9090, its metrics 9091) when
    # it is free, else a free one, so two stacks on one machine do not collide; Redis always
    # takes a free one. Set: exactly that port.
    api_port: int | None = Field(default=None, ge=1, le=65535)
    # The scaler's gRPC port (what a ScaledObject's scalerAddress names) and its own metrics.
    scaler_port: int | None = Field(default=None, ge=1, le=65535)
    scaler_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    redis_port: int | None = Field(default=None, ge=1, le=65535)
    # Workers of all models together (cli.local.machine: from the cores and memory when unset).
    # The scaler's own setting of the same name is taken too.
    total_worker_limit: int | None = Field(
        default=None,
        ge=1,
        le=2**31 - 1,
        validation_alias=AliasChoices(
            "total_worker_limit",
            "OASIS_AUTOSCALER_TOTAL_WORKER_LIMIT",
            "OASIS_AUTOSCALER_SCALER_TOTAL_WORKER_LIMIT",
        ),
    )
    # How long a service may take to answer after it starts before `up` gives up on it; a
    # slow start is shown while it is waited for.
    start_deadline_seconds: float = Field(default=600.0, gt=0)
    admin_username: str = "admin"
    # Unset: generated once per stack start and printed.
    admin_password: SecretStr | None = None
    # How often the stack looks for newly registered models.
    discovery_seconds: float = Field(default=2.0, gt=0)
    # How long a stopped worker may take to finish its chunk before it is killed (a pod's
    # terminationGracePeriodSeconds).
    stop_grace_seconds: float = Field(default=300.0, ge=0)
    # The stand-in's KEDA and HPA timing. Shorter than a cluster's defaults (30 s poll, 15 s HPA
    # sync, 300 s cooldown) so that on one machine workers are seen to rise and fall within a
    # minute; push activation wakes a model at once either way. The scale-down stabilization is
    # our ScaledObject's (none), from the one statement of its timing.
    polling_interval_seconds: float = Field(default=5.0, gt=0)
    hpa_sync_seconds: float = Field(default=2.0, gt=0)
    cooldown_seconds: float = Field(default=15.0, ge=0)
    scale_down_stabilization_seconds: float = Field(default=SCALE_DOWN_STABILIZATION_SECONDS, ge=0)
    # The ScaledObject's maxReplicaCount for every model (the scaler applies each model's own cap).
    max_workers_per_model: int = Field(default=10, ge=1)

    @property
    def keda_timing(self) -> KedaTiming:
        return KedaTiming(
            polling_interval=self.polling_interval_seconds,
            hpa_sync_period=self.hpa_sync_seconds,
            cooldown_period=self.cooldown_seconds,
            scale_down_stabilization=self.scale_down_stabilization_seconds,
            max_replicas=self.max_workers_per_model,
        )
