"""The exporter's settings: one typed object, from `OASIS_AUTOSCALER_EXPORTER_*` and flags.

The password (and an OIDC client secret) can come from a variable, a flag, or a mounted file
(`password_file`, a Kubernetes Secret volume), so it need not appear on a command line.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "OASIS_AUTOSCALER_EXPORTER_"
WEBSOCKET_PATH = "/ws/v2/queue-status/"


class ExporterSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    # The platform's REST API, its path prefix included (`http://oasis-server:8000/api`).
    platform_url: str
    # The platform's queue-status websocket; default: ws(s):// on the platform URL's host with
    # /ws/v2/queue-status/. Empty: no websocket, the REST resync alone.
    websocket_url: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    # OIDC installs: client credentials instead of a username and password.
    client_id: str | None = None
    client_secret: SecretStr | None = None
    client_secret_file: Path | None = None
    # Where /metrics and /healthz are served.
    host: str = "127.0.0.1"
    port: int = Field(default=9102, ge=0, le=65535)
    # GET /v2/queue-status/ costs the platform a broker call and queries per analysis: slow.
    resync_seconds: float = Field(default=30.0, gt=0)
    # The models and their scaling configurations are read again this often.
    models_refresh_seconds: float = Field(default=60.0, gt=0)
    request_timeout_seconds: float = Field(default=10.0, gt=0)
    # Reconnection back-off: doubles from the first delay up to the last.
    backoff_initial_seconds: float = Field(default=1.0, gt=0)
    backoff_max_seconds: float = Field(default=60.0, gt=0)
    # Beyond this age of the last good snapshot, /metrics answers 503: the scaler's own
    # max_age_seconds then runs out, and KEDA's fallback applies instead of a frozen answer.
    max_snapshot_age_seconds: float = Field(default=300.0, gt=0)
    # Renew the token when this fraction of its lifetime has passed (upstream: half).
    token_renew_fraction: float = Field(default=0.5, gt=0, lt=1)

    @field_validator("platform_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"must be an http:// or https:// URL with a host, not {value!r}")
        return value.rstrip("/")

    @field_validator("websocket_url")
    @classmethod
    def _ws_url(cls, value: str | None) -> str | None:
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("ws", "wss") or not parts.netloc:
                raise ValueError(f"must be a ws:// or wss:// URL with a host, not {value!r}")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> ExporterSettings:
        if self.password is not None and self.password_file is not None:
            raise ValueError("password and password_file: set one, not both")
        if self.client_secret is not None and self.client_secret_file is not None:
            raise ValueError("client_secret and client_secret_file: set one, not both")
        if self.username is not None and self.client_id is not None:
            raise ValueError("username and client_id: log in one way, not both")
        if self.username is not None and self.password is None and self.password_file is None:
            raise ValueError("username needs password or password_file")
        if (
            self.client_id is not None
            and self.client_secret is None
            and (self.client_secret_file is None)
        ):
            raise ValueError("client_id needs client_secret or client_secret_file")
        if self.backoff_initial_seconds > self.backoff_max_seconds:
            raise ValueError("backoff_initial_seconds must not exceed backoff_max_seconds")
        return self

    @property
    def effective_websocket_url(self) -> str | None:
        if self.websocket_url is not None:
            return self.websocket_url or None
        parts = urlsplit(self.platform_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, WEBSOCKET_PATH, "", ""))

    def login(self) -> dict[str, str] | None:
        """The body of POST /access_token/ (None: the platform is read without logging in)."""
        if self.username is not None:
            password = _secret(self.password, self.password_file, "password")
            return {"username": self.username, "password": password}
        if self.client_id is not None:
            secret = _secret(self.client_secret, self.client_secret_file, "client_secret")
            return {"client_id": self.client_id, "client_secret": secret}
        return None


def _secret(value: SecretStr | None, path: Path | None, name: str) -> str:
    """Read when logging in, so a rotated Secret file is picked up without a restart."""
    if value is not None:
        return value.get_secret_value()
    if path is not None:
        try:
            return path.read_text().strip()
        except OSError as error:
            raise ValueError(f"cannot read {name}_file {path}: {error}") from None
    raise ValueError(f"{name} is not set: give it, or {name}_file")
