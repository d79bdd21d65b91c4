"""The local stack: a private Redis, the API on SQLite, the scaler, and KEDA's local stand-in
sizing each model's pool of real worker processes.

Everything runs as real processes under one supervisor. Models are found through the API, as
any client finds them, so a model registered while the stack runs gets its ScaledObject within
`discovery_seconds`; its workers come when the scaler says it has work.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests
from redis import Redis

from cli.api_client import ApiClient, ClientSettings, LoginRefused
from cli.base import CommandError
from cli.keda.client import KedaClient
from cli.local.backoff import Backoff
from cli.local.keda import KedaStandIn
from cli.local.launch import (
    POLL_SECONDS,
    bindable,
    free_port,
    grpc_serving,
    redis_answers,
    redis_argv,
    service_argv,
)
from cli.local.machine import Budget, this_machine
from cli.local.pool import WorkerPool
from cli.local.settings import StackSettings
from cli.local.supervisor import Child, Supervisor
from cli.local.tether import tether
from worker.presence import live_workers

PASSWORD_FILE = "admin-password"


# How long a restarted service must run before its back-off is forgotten.
SETTLED_SECONDS = 60.0
# A slow start is said every this many seconds while it is waited for.
SLOW_START_SECONDS = 15.0
SCALER_GRPC_THREADS = 4096
SCALER_SCRAPE_TIMEOUT_SECONDS = 5.0
# The usual ports, taken when free and no flag names one.
USUAL_PORTS = {"api_port": 8000, "scaler_port": 9090, "scaler_metrics_port": 9091}


class StartFailed(CommandError):
    """A service exited while it started, or never answered: one line, reason and log."""


@dataclass
class Service:
    """One of the stack's own services (Redis, the API, the scaler): how to start it, how to see
    that it answers, and its restarts."""

    name: str
    argv: list[str]
    env: dict[str, str]
    ready: Callable[[], bool]
    child: Child | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff: Backoff = field(default_factory=Backoff)


@dataclass
class LocalStack:
    settings: StackSettings
    password: str = ""
    redis_url: str = ""
    api_url: str = ""
    scaler_address: str = ""
    supervisor: Supervisor = field(init=False)
    keda: KedaStandIn | None = None
    pool: WorkerPool | None = None
    services: dict[str, Service] = field(default_factory=dict)
    say: Callable[[str], None] = print
    budget: Budget = field(init=False)
    # Ends the children if this process is killed (cli/local/tether.py); it goes with it.
    _tether: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.data_dir = self.settings.data_dir.absolute()
        self.supervisor = Supervisor(
            self.data_dir / "logs", sessions_file=self.data_dir / "logs" / "sessions"
        )
        secret = self.settings.admin_password
        self.password = secret.get_secret_value() if secret else kept_password(self.data_dir)
        limit = self.settings.total_worker_limit
        self.budget = (
            Budget(limit, "set by total_worker_limit") if limit is not None else this_machine()
        )
        host = self.settings.host
        self.ports = {
            name: getattr(self.settings, name) or usual_or_free(host, USUAL_PORTS[name])
            for name in USUAL_PORTS
        }
        self.ports["redis_port"] = self.settings.redis_port or free_port(host)

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
        (self.data_dir / "logs").mkdir(exist_ok=True)
        self._tether = tether(self.data_dir / "logs" / "sessions")
        host = self.settings.host
        redis_port, api_port = self.ports["redis_port"], self.ports["api_port"]
        scaler_port = self.ports["scaler_port"]
        folder = self.data_dir / "redis"
        folder.mkdir(exist_ok=True)
        self.redis_url = f"redis://{host}:{redis_port}/0"
        self.api_url = f"http://{host}:{api_port}"
        self.scaler_address = f"{host}:{scaler_port}"
        self.launch(
            Service(
                "redis",
                redis_argv(host, redis_port, folder, persistent=True),
                {},
                lambda: redis_answers(host, redis_port),
            )
        )
        self.launch(
            Service(
                "api",
                service_argv("api", "--host", host, "--port", str(api_port)),
                self.environment,
                lambda: requests.get(f"{self.api_url}/healthcheck/", timeout=1).ok,
            )
        )
        scaler = service_argv(
            "scaler",
            "--host",
            host,
            "--port",
            str(scaler_port),
            "--metrics-port",
            str(self.ports["scaler_metrics_port"]),
            "--scrape-target",
            f"{self.api_url}/metrics",
            "--total-worker-limit",
            str(self.budget.workers),
            # The stand-in keeps each model's StreamIsActive open, as KEDA does, and each open
            # stream holds a server thread (made only when needed): room for thousands of models.
            "--grpc-threads",
            str(SCALER_GRPC_THREADS),
            # The API shares this machine with the workers' kernels: its /metrics of a thousand
            # models can take seconds under load, which is a slow read here, not a dead source.
            "--timeout-seconds",
            str(SCALER_SCRAPE_TIMEOUT_SECONDS),
        )
        self.launch(Service("scaler", scaler, {}, lambda: grpc_serving(self.scaler_address)))
        self._start_keda()

    def launch(self, service: Service) -> None:
        """Start the service and wait until it answers: a slow start is said and waited for,
        an exit is a StartFailed naming its reason and log."""
        self.services[service.name] = service
        child = self._spawn(service)
        begun = time.monotonic()
        said = begun
        deadline = begun + self.settings.start_deadline_seconds
        while True:
            if not child.running:
                raise StartFailed(
                    f"{service.name} exited with status {child.process.returncode} while "
                    f"starting: {last_line(child.log)} (log: {child.log})"
                )
            try:
                if service.ready():
                    return
            except OSError:  # refused, reset, timed out; requests' errors are OSErrors too
                pass
            now = time.monotonic()
            if now >= deadline:
                raise StartFailed(
                    f"{service.name} did not answer within "
                    f"{self.settings.start_deadline_seconds:g} s (log: {child.log})"
                )
            if now - said >= SLOW_START_SECONDS:
                said = now
                self.say(f"{service.name} is slow to start ({now - begun:.0f} s); still waiting")
            time.sleep(POLL_SECONDS)  # polling with a deadline

    def _spawn(self, service: Service) -> Child:
        service.child = self.supervisor.start(service.name, service.argv, service.env)
        service.started_at = time.monotonic()
        return service.child

    def _start_keda(self) -> None:
        redis = Redis.from_url(self.redis_url, socket_timeout=2)
        pool = WorkerPool(
            self.supervisor,
            command=lambda queue: (service_argv("worker", "--queue", queue), self.environment),
            presence=lambda queue: live_workers(redis, queue),
            grace_seconds=self.settings.stop_grace_seconds,
            limit=self.budget.workers,
        )
        self.pool = pool
        self.keda = KedaStandIn(KedaClient(self.scaler_address), pool, self.settings.keda_timing)
        self.keda.start()

    def tend(self, now: float) -> None:
        """Restart a service of the stack's own that died, with back-off; forget workers that
        exited on their own (the stand-in starts their replacements, as a ReplicaSet would)."""
        for service in self.services.values():
            child = service.child
            if child is not None and not child.running and child.stopping_since is None:
                self.supervisor.forget(child)
                service.child = None
                delay = service.backoff.failed(
                    RuntimeError(
                        f"exited with status {child.process.returncode}: "
                        f"{last_line(child.log)} (log: {child.log})"
                    ),
                    now,
                )
                self.say(f"{service.name} {service.backoff.error}; restarting in {delay:.0f} s")
            if service.child is None and service.backoff.due(now):
                self._spawn(service)
                service.restarts += 1
                self.say(f"{service.name} restarted (restart {service.restarts})")
            elif (
                service.child is not None
                and service.backoff.failures
                and now - service.started_at >= SETTLED_SECONDS
            ):
                service.backoff.succeeded()
        for child in self.supervisor.exited():
            if child.name.startswith("worker-"):
                self.supervisor.forget(child)
                note = (
                    f"{child.name} exited with status {child.process.returncode} (log: {child.log})"
                )
                self.say(note)

    def notes(self, now: float) -> list[str]:
        """The stack's own state, for the view: budget, services down or restarted."""
        present = self.pool.present() if self.pool is not None else 0
        waiting = self.pool.not_started() if self.pool is not None else 0
        notes = [
            f"worker budget: {self.budget.workers} ({self.budget.reason}); {present} present"
            + (f"; {waiting} wanted but not started (beyond the budget)" if waiting else "")
        ]
        for service in self.services.values():
            if service.child is None:
                wait = max(0.0, service.backoff.next_try - now)
                notes.append(
                    f"{service.name}: down, {service.backoff.error}; restart in {wait:.0f} s"
                )
            elif service.restarts:
                notes.append(f"{service.name}: restarted {service.restarts}x")
        return notes

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


def last_line(log: Path) -> str:
    """The last non-empty line of a log: usually why a process exited."""
    try:
        with log.open("rb") as stream:
            stream.seek(max(0, log.stat().st_size - 4096))
            lines = [line.strip() for line in stream.read().decode(errors="replace").splitlines()]
    except OSError:
        return "(no log)"
    found = [line for line in lines if line]
    return found[-1] if found else "(empty log)"


def usual_or_free(host: str, usual: int) -> int:
    """`usual` when nothing listens on it, else a free port."""
    return usual if bindable(host, usual) else free_port(host)
