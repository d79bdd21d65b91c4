"""Real servers for tests, on free ports of 127.0.0.1: PostgreSQL and Prometheus here, and the
product's own launchers (Redis, the API, a worker: cli/local/launch.py) under the names the
tests know.

Each is a context manager that starts the server, polls until it answers (with a deadline), and
stops it by PID on exit. A missing binary is an error, never a skip: CI must run every test.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from cli.local.launch import (
    api_server,
    free_port,
    redis_server,
    scaler_argv,
    service_argv,
    stop_process,
    wait_until,
    worker_server,
)

__all__ = [
    "api_server",
    "binary",
    "exporter_server",
    "free_port",
    "postgres_server",
    "prometheus_server",
    "redis_server",
    "scaler_server",
    "stop_process",
    "wait_until",
    "worker_server",
]


def binary(name: str, *candidates: str) -> str:
    for candidate in (name, *candidates):
        found = shutil.which(candidate) or (candidate if os.access(candidate, os.X_OK) else None)
        if found:
            return found
    raise RuntimeError(f"{name} is not installed: run .ci/setup (it installs what tests need)")


def _postgres_bin(tool: str) -> str:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    return binary(tool, *(str(v / tool) for v in versions))


@contextmanager
def postgres_server() -> Iterator[str]:
    """A private PostgreSQL cluster (run as a non-root user when we are root); yields its URL."""
    # Not under pytest's tmp dir: that is private to root, and PostgreSQL refuses to run as root.
    directory = Path(tempfile.mkdtemp(prefix="oasis-autoscaler-pg-"))
    data = directory / "pgdata"
    port = free_port()
    as_user = _unprivileged_user() if os.geteuid() == 0 else None
    if as_user:
        shutil.chown(directory, user=as_user)
    _run_as(
        as_user,
        [
            _postgres_bin("initdb"),
            "-D",
            str(data),
            "-U",
            "oasis",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        ],
    )
    process = subprocess.Popen(
        _as(
            as_user,
            [
                _postgres_bin("postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={directory}",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
            ],
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _pg_ready(port), "postgres", process)
        yield f"postgresql+psycopg://oasis@127.0.0.1:{port}/postgres"
    finally:
        stop_process(process)
        shutil.rmtree(directory, ignore_errors=True)


def _pg_ready(port: int) -> bool:
    import psycopg

    with psycopg.connect(
        f"host=127.0.0.1 port={port} user=oasis dbname=postgres", connect_timeout=1
    ):
        return True


def _unprivileged_user() -> str:
    for user in ("postgres", "nobody"):
        if subprocess.run(["id", "-u", user], capture_output=True).returncode == 0:
            return user
    raise RuntimeError("PostgreSQL refuses to run as root and no unprivileged user exists")


def _as(user: str | None, command: list[str]) -> list[str]:
    return ["runuser", "-u", user, "--", *command] if user else command


def _run_as(user: str | None, command: list[str]) -> None:
    subprocess.run(_as(user, command), check=True, capture_output=True)


@contextmanager
def prometheus_server(
    directory: Path, targets: list[str], *, scrape_interval: str = "1s"
) -> Iterator[str]:
    """A private Prometheus (Debian's `prometheus`) scraping `targets`, each the URL of a
    /metrics; yields its base URL. Its first sample is queryable ~5 s after start: poll."""
    import json
    from urllib.parse import urlsplit

    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    jobs = []
    for number, target in enumerate(targets):
        parts = urlsplit(target)
        jobs.append(
            {
                "job_name": f"target-{number}",
                "scheme": parts.scheme or "http",
                "metrics_path": parts.path or "/metrics",
                "static_configs": [{"targets": [parts.netloc]}],
            }
        )
    config = directory / "prometheus.yml"
    # JSON is YAML; the scrape timeout may not exceed the interval.
    config.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": scrape_interval, "scrape_timeout": scrape_interval},
                "scrape_configs": jobs,
            }
        )
    )
    log = (directory / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(f"{url}/-/ready", timeout=1).ok, "prometheus", process)
        yield url
    finally:
        stop_process(process)
        log.close()


@contextmanager
def exporter_server(
    directory: Path,
    *,
    platform_url: str,
    websocket_url: str,
    username: str | None = None,
    password: str | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`oasis-autoscaler exporter` as a real process on a free port; yields its base URL and
    the process. The password goes through a file, as a mounted Secret would. It is up once it
    answers /healthz at all (503 until it has read the platform)."""
    port = free_port()
    command = service_argv(
        "exporter",
        "--platform-url",
        platform_url,
        "--websocket-url",
        websocket_url,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    )
    if username is not None:
        command += ["--username", username]
    if password is not None:
        secret = directory / f"exporter-password-{port}"
        secret.write_text(password)
        command += ["--password-file", str(secret)]
    log = (directory / f"exporter-{port}.log").open("wb")
    process = subprocess.Popen(
        command, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: requests.get(f"{url}/healthz", timeout=1).status_code in (200, 503),
            "the exporter",
            process,
        )
        yield url, process
    finally:
        stop_process(process)
        log.close()


@contextmanager
def scaler_server(
    directory: Path, targets: list[str], *, max_age_seconds: float = 30.0
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`oasis-autoscaler scaler` scraping `targets` as a real process; yields its gRPC address
    once it listens (its health is NOT_SERVING until it has read the targets)."""
    port = free_port()
    flags = ["--max-age-seconds", str(max_age_seconds)]
    for target in targets:
        flags += ["--scrape-target", target]
    log = (directory / f"scaler-{port}.log").open("wb")
    process = subprocess.Popen(
        scaler_argv(port, free_port(), *flags), stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_until(lambda: _listening(port), "the scaler", process)
        yield f"127.0.0.1:{port}", process
    finally:
        stop_process(process)
        log.close()


def _listening(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
