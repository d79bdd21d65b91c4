"""The local stack: a private Redis, the API on SQLite, the scaler, and KEDA's local stand-in
sizing each model's pool of real worker processes.

Everything runs as real processes under one supervisor. Models are found through the API, as
any client finds them, so a model registered while the stack runs gets its ScaledObject within
`discovery_seconds`; its workers come when the scaler says it has work.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import requests
from redis import Redis

from cli.api_client import ApiClient, ClientSettings, LoginRefused
from cli.base import CommandError
from cli.keda.client import KedaClient
from cli.local.keda import KedaStandIn
from cli.local.launch import (
    free_port,
    grpc_serving,
    redis_answers,
    redis_argv,
    service_argv,
    wait_until,
)
from cli.local.pool import WorkerPool
from cli.local.settings import StackSettings
from cli.local.supervisor import Supervisor
from worker.presence import live_workers

PASSWORD_FILE = "admin-password"


@dataclass
class LocalStack:
    settings: StackSettings
    password: str = ""
    redis_url: str = ""
    api_url: str = ""
    scaler_address: str = ""
    supervisor: Supervisor = field(init=False)
    keda: KedaStandIn | None = None

    def __post_init__(self) -> None:
        self.data_dir = self.settings.data_dir.absolute()
        self.supervisor = Supervisor(self.data_dir / "logs")
        secret = self.settings.admin_password
        self.password = secret.get_secret_value() if secret else kept_password(self.data_dir)

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
        self._start_scaler()
        self._start_keda()

    def _start_redis(self) -> None:
        host, port = self.settings.host, free_port(self.settings.host)
        folder = self.data_dir / "redis"
        folder.mkdir(exist_ok=True)
        child = self.supervisor.start("redis", redis_argv(host, port, folder))
        self.redis_url = f"redis://{host}:{port}/0"
        wait_until(lambda: redis_answers(host, port), "Redis", child.process)

    def _start_api(self) -> None:
        host, port = self.settings.host, self.settings.api_port
        child = self.supervisor.start(
            "api", service_argv("api", "--host", host, "--port", str(port)), self.environment
        )
        self.api_url = f"http://{host}:{port}"
        wait_until(
            lambda: requests.get(f"{self.api_url}/healthcheck/", timeout=1).ok,
            f"the API on {self.api_url}",
            child.process,
        )

    def _start_scaler(self) -> None:
        host, port = self.settings.host, self.settings.scaler_port
        argv = service_argv(
            "scaler",
            "--host",
            host,
            "--port",
            str(port),
            "--metrics-port",
            str(self.settings.scaler_metrics_port),
            "--scrape-target",
            f"{self.api_url}/metrics",
        )
        child = self.supervisor.start("scaler", argv)
        self.scaler_address = f"{host}:{port}"
        wait_until(
            lambda: grpc_serving(self.scaler_address), f"the scaler on {host}:{port}", child.process
        )

    def _start_keda(self) -> None:
        redis = Redis.from_url(self.redis_url, socket_timeout=2)
        pool = WorkerPool(
            self.supervisor,
            command=lambda queue: (service_argv("worker", "--queue", queue), self.environment),
            presence=lambda queue: live_workers(redis, queue),
            grace_seconds=self.settings.stop_grace_seconds,
        )
        self.keda = KedaStandIn(KedaClient(self.scaler_address), pool, self.settings.keda_timing)
        self.keda.start()

    def queues(self) -> list[str]:
        """The queue of every registered model."""
        client = ClientSettings(
            api_url=self.api_url,
            admin_username=self.settings.admin_username,
            admin_password=self.password,
            request_timeout_seconds=10,
        )
        with ApiClient(client) as api:
            try:
                api.login(self.settings.admin_username, self.password)
            except LoginRefused:
                raise CommandError(
                    f"the API in {self.data_dir} refuses {self.settings.admin_username!r}: its "
                    "admin was created with another password; set "
                    "OASIS_AUTOSCALER_ADMIN_PASSWORD to it, or use a new --data-dir"
                ) from None
            models = api.get_json("/v2/models/", missing=f"no models at {self.api_url}")
        return sorted({model["queue_name"] for model in models})

    def discover(self) -> list[str]:
        """Give every registered model a ScaledObject; return the queues that got one now."""
        assert self.keda is not None, "start() first"
        known = set(self.keda.scaling())
        for queue in self.queues():
            self.keda.add(queue)
        return sorted(set(self.keda.scaling()) - known)

    def stop(self) -> None:
        if self.keda is not None:
            self.keda.stop()  # no more scaling while the workers drain
        grace = self.settings.stop_grace_seconds
        workers = [c for c in self.supervisor.children if c.name.startswith("worker-")]
        self.supervisor.stop_together(workers, grace)
        self.supervisor.stop_all(grace)


def kept_password(data_dir: Path) -> str:
    """The admin password generated for this data dir, kept in it (owner-only) at the first
    start: the API creates its admin once, so a later start must log in with the same one."""
    path = data_dir / PASSWORD_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(12))
    return path.read_text().strip()
