"""The platform's REST API as the exporter reads it: login, token renewal, a path prefix.

`POST {prefix}/access_token/` with a username and password (or OIDC client credentials) gives
`access_token` and `expires_in`; the token is renewed by logging in again once a fraction of
its lifetime has passed (upstream's controller: half), and at once when a call is refused with
401 or 403. Every failure is a `PlatformError` naming the call; nothing here retries in a loop
(the service's loops do, with back-off).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests

ACCESS_TOKEN_PATH = "/access_token/"
QUEUE_STATUS_PATH = "/v2/queue-status/"
MODELS_PATH = "/v2/models/"
REFUSED = (401, 403)
# A token without `expires_in` is renewed after this long.
DEFAULT_LIFETIME_SECONDS = 3600.0


class PlatformError(Exception):
    """A call to the platform failed; the text names it and why."""


class TokenRefused(PlatformError):
    """The platform refused the credentials (or the token for a websocket)."""


class PlatformClient:
    """One platform, at `base_url` (its path prefix included). Thread-safe: the loops share it."""

    def __init__(
        self,
        base_url: str,
        *,
        login: Callable[[], Mapping[str, str] | None],
        timeout: float,
        renew_fraction: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._login = login
        self._timeout = timeout
        self._renew_fraction = renew_fraction
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0
        self._local = threading.local()  # one requests.Session per thread

    def token(self) -> str | None:
        """A valid access token (logging in when there is none or it is due for renewal);
        None when the platform is read without logging in."""
        with self._lock:
            if self._token is not None and self._clock() < self._renew_at:
                return self._token
            body = self._credentials()
            if body is None:
                return None
            self._token, lifetime = self._access_token(body)
            self._renew_at = self._clock() + lifetime * self._renew_fraction
            return self._token

    def forget_token(self) -> None:
        """The platform refused the token: the next call logs in again."""
        with self._lock:
            self._token = None

    def get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """GET `path` under the prefix as JSON; on 401/403 logs in again once and retries."""
        response = self._get(path, params)
        try:
            return response.json()
        except ValueError:
            raise PlatformError(f"GET {response.url}: the answer is not JSON") from None

    def _get(self, path: str, params: Mapping[str, str] | None = None) -> requests.Response:
        for attempt in (1, 2):
            token = self.token()
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            url = self.base_url + path
            try:
                response = self._session().get(
                    url, params=params, headers=headers, timeout=self._timeout
                )
            except requests.RequestException as error:
                raise PlatformError(f"GET {url}: {error}") from None
            if response.status_code in REFUSED and token and attempt == 1:
                self.forget_token()
                continue
            if response.status_code in REFUSED:
                raise TokenRefused(f"GET {url}: refused ({response.status_code})")
            if not response.ok:
                raise PlatformError(f"GET {url}: HTTP {response.status_code}")
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def queue_status(self) -> bytes:
        """The queue-status message as the platform sent it (snapshot.parse reads it in one
        pass)."""
        return self._get(QUEUE_STATUS_PATH).content

    def models(self) -> list[dict[str, Any]]:
        body = self.get(MODELS_PATH)
        # Paginated installs answer {"results": [...]}; upstream's v2 answers a list.
        rows = body.get("results") if isinstance(body, dict) else body
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise PlatformError(f"GET {self.base_url}{MODELS_PATH}: not a list of models")
        return rows

    def scaling_configuration(self, model_id: int) -> Any:
        return self.get(f"{MODELS_PATH}{model_id}/scaling_configuration/")

    def _credentials(self) -> Mapping[str, str] | None:
        try:
            return self._login()
        except ValueError as error:  # a password file that cannot be read
            raise TokenRefused(str(error)) from None

    def _access_token(self, body: Mapping[str, str]) -> tuple[str, float]:
        url = self.base_url + ACCESS_TOKEN_PATH
        try:
            response = self._session().post(url, json=dict(body), timeout=self._timeout)
        except requests.RequestException as error:
            raise PlatformError(f"POST {url}: {error}") from None
        if response.status_code in (400, *REFUSED):
            raise TokenRefused(f"POST {url}: the platform refused the credentials")
        if not response.ok:
            raise PlatformError(f"POST {url}: HTTP {response.status_code}")
        try:
            answer = response.json()
            token = answer["access_token"]
            lifetime = float(answer.get("expires_in") or DEFAULT_LIFETIME_SECONDS)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise PlatformError(f"POST {url}: no access_token in the answer") from None
        if not isinstance(token, str) or not token:
            raise PlatformError(f"POST {url}: no access_token in the answer")
        return token, max(lifetime, 1.0)

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session
