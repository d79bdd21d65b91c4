"""The local stack's settings: one typed object, from `OASIS_AUTOSCALER_*` and CLI flags."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from cli.keda.timing import KedaTiming


class StackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OASIS_AUTOSCALER_", extra="ignore")

    data_dir: Path = Path.home() / ".local" / "share" / "oasis-autoscaler"
    host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    # The scaler's gRPC port (what a ScaledObject's scalerAddress names) and its own metrics.
    scaler_port: int = Field(default=9090, ge=1, le=65535)
    scaler_metrics_port: int = Field(default=9091, ge=1, le=65535)
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
    # minute; push activation wakes a model at once either way.
    polling_interval_seconds: float = Field(default=5.0, gt=0)
    hpa_sync_seconds: float = Field(default=2.0, gt=0)
    cooldown_seconds: float = Field(default=15.0, ge=0)
    scale_down_stabilization_seconds: float = Field(default=10.0, ge=0)
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
