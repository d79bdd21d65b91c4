"""The local stack's settings: one typed object, from `OASIS_AUTOSCALER_*` and CLI flags."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class StackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OASIS_AUTOSCALER_", extra="ignore")

    data_dir: Path = Path.home() / ".local" / "share" / "oasis-autoscaler"
    host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    admin_username: str = "admin"
    # Unset: generated once per stack start and printed.
    admin_password: SecretStr | None = None
    # The fixed pool of worker processes each registered model gets.
    workers_per_model: int = Field(default=2, ge=1)
    # How often the stack looks for newly registered models.
    discovery_seconds: float = Field(default=2.0, gt=0)
    # How long a stopped worker may take to finish its chunk before it is killed.
    stop_grace_seconds: float = Field(default=60.0, ge=0)
