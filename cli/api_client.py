"""The API as a client calls it: token login and JSON GETs, each failure one clear sentence.

The commands that talk to a running API (`subtasks`, the local stack) share it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from cli.base import CommandError

if TYPE_CHECKING:
    # Imported where used: requests takes ~60 ms to load, which every other subcommand of the
    # one CLI would pay.
    import requests


class ClientSettings(BaseSettings):
    """How to reach the API as a client: `OASIS_AUTOSCALER_*` variables, flags over them."""

    model_config = SettingsConfigDict(env_prefix="OASIS_AUTOSCALER_", extra="ignore")

    api_url: str = "http://127.0.0.1:8000"
    # The same variables the API creates its first user from, so one environment serves both.
    admin_username: str = "admin"
    admin_password: SecretStr | None = None
    request_timeout_seconds: float = Field(default=30.0, gt=0)


class ApiClientError(CommandError):
    """The API cannot be reached, refuses the login, or answers what the client cannot read."""


class LoginRefused(ApiClientError):
    """The API does not know this user with this password."""


class ApiClient:
    """The API's token login and JSON GETs, each failure turned into a ApiClientError."""

    def __init__(self, settings: ClientSettings) -> None:
        import requests

        self.base = settings.api_url.rstrip("/")
        self.timeout = settings.request_timeout_seconds
        self.session = requests.Session()

    def login(self, username: str, password: str) -> None:
        response = self._send(
            "POST", "/access_token/", json={"username": username, "password": password}
        )
        if response.status_code == 401:
            raise LoginRefused(
                f"the API at {self.base} refused user {username!r} and the password given "
                f"(401: {_detail(response)})"
            )
        body = json_of(self._expect_ok(response))
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str):
            raise ApiClientError(f"the API at {self.base} answered a login without access_token")
        self.session.headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str) -> requests.Response:
        response = self._send("GET", path)
        if response.status_code == 401:
            raise ApiClientError(
                f"the API at {self.base} refused the access token for GET {path} "
                f"(401: {_detail(response)})"
            )
        return response

    def get_json(self, path: str, *, missing: str) -> Any:
        """The JSON answer to GET `path`; a 404 is a ApiClientError saying `missing`."""
        response = self.get(path)
        if response.status_code == 404:
            raise ApiClientError(missing)
        return json_of(self._expect_ok(response))

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        import requests

        url = self.base + path
        try:
            return self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.Timeout:
            raise ApiClientError(
                f"the API at {self.base} did not answer {method} {path} within {self.timeout:g} s"
            ) from None
        except requests.ConnectionError as exc:
            raise ApiClientError(
                f"cannot reach the API at {self.base} ({_reason(exc)}): is it running there? "
                "Set --api-url or OASIS_AUTOSCALER_API_URL"
            ) from None
        except requests.RequestException as exc:  # a malformed URL, mostly
            raise ApiClientError(f"cannot ask the API at {self.base!r}: {exc}") from None

    def _expect_ok(self, response: requests.Response) -> requests.Response:
        if not response.ok:
            request = response.request
            path = (request.path_url if request else "") or "?"
            raise ApiClientError(
                f"the API at {self.base} answered {response.status_code} to "
                f"{request.method if request else ''} {path}: {_detail(response)}"
            )
        return response

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.session.close()


def json_of(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ApiClientError(
            f"the API answered {response.request.method if response.request else ''} "
            f"{response.url} with something that is not JSON"
        ) from None


def _detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return str(body["detail"])
    return str(body)[:200]


def _reason(exc: requests.ConnectionError) -> str:
    # requests nests the socket error several layers deep; its errno text is what people need.
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(exc))
    return found.group(1).strip() if found else type(exc).__name__
