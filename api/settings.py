"""The API's settings: one typed object, from `OASIS_AUTOSCALER_*` variables and CLI flags."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.storage import database_url


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OASIS_AUTOSCALER_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    data_dir: Path = Path.home() / ".local" / "share" / "oasis-autoscaler"
    # Default: a SQLite file in the data dir. PostgreSQL: postgresql+psycopg://user@host/db
    database_url: str | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    admin_username: str = "admin"
    # Unset: a password is generated when the first user is created, and printed once.
    admin_password: SecretStr | None = None
    # Unset: a secret is generated once and kept in the data dir, so tokens survive restarts.
    jwt_secret: SecretStr | None = None
    access_token_lifetime_seconds: int = Field(default=3600, ge=1)
    refresh_token_lifetime_seconds: int = Field(default=7 * 24 * 3600, ge=1)
    # Location files larger than this are refused with 413.
    max_upload_bytes: int = Field(default=1024 * 1024 * 1024, ge=1)

    @property
    def effective_database_url(self) -> str:
        return database_url(self.database_url, self.data_dir)
