"""`oasis-autoscaler worker`: a model worker (and splitter) consuming one model's queue."""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from cli.base import UsageError, add_setting_flags, settings_from

if TYPE_CHECKING:
    from worker.settings import WorkerSettings

FLAGS = {
    "queue": str,
    "data_dir": Path,
    "database_url": str,
    "redis_url": str,
    "model_data_dir": Path,
    "concurrency": int,
}


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="run a model worker on its model's queue",
        description="Consume one model's queue: split the analyses queued there into sub-tasks "
        "and run them with the Oasis kernel. Settings come from OASIS_AUTOSCALER_* environment "
        "variables; these flags override them.",
    )
    add_setting_flags(parser, FLAGS)
    parser.add_argument("--loglevel", default="INFO")
    parser.set_defaults(func=run)


def node_name(settings: WorkerSettings) -> str:
    """The worker's Celery node name, unique among the workers of its queue.

    In a pod (the Deployment gives its name) there is one worker: `<queue>@<pod>`, which its
    probe pings. Elsewhere several may share a host: `<queue>.<pid>@<host>`.
    """
    if settings.pod_name:
        return f"{settings.queue}@{settings.pod_name}"
    return f"{settings.queue}.{os.getpid()}@{socket.gethostname()}"


def run(args: argparse.Namespace, console: Console) -> int:
    from worker import presence, warm_gate
    from worker.runtime import configure_runtime
    from worker.settings import WorkerSettings
    from worker.tasks import configure_app, install_reconciler

    settings = settings_from(WorkerSettings, args, FLAGS)
    if not settings.queue:
        raise UsageError("give the model's queue: --queue or OASIS_AUTOSCALER_QUEUE")
    if settings.presence_ttl_seconds <= settings.presence_refresh_seconds:
        raise UsageError(
            "OASIS_AUTOSCALER_PRESENCE_TTL_SECONDS must be above "
            "OASIS_AUTOSCALER_PRESENCE_REFRESH_SECONDS, or a live worker's record would expire"
        )
    # numba compiles in this process too (lookup, run preparation), not only in the kernel's.
    # A folder per CPU type (worker/numba_cache.py): code compiled for another CPU is no use here.
    from worker.numba_cache import cpu_folder

    os.environ["NUMBA_CACHE_DIR"] = str(cpu_folder(settings.effective_numba_cache_dir.absolute()))
    runtime = configure_runtime(settings)
    app = configure_app(settings)
    node = node_name(settings)
    record = presence.Presence(
        runtime.redis,
        node=node,
        queue=settings.queue,
        ttl_seconds=settings.presence_ttl_seconds,
        refresh_seconds=settings.presence_refresh_seconds,
        slots=settings.concurrency,
        is_warming=warm_gate.holding,
    )
    presence.install(record)
    install_reconciler(settings)
    warm_gate.install(
        app, settings.concurrency, settings.warm_up_wait_seconds, on_open=record.warmed
    )
    app.worker_main(
        [
            "worker",
            "--queues",
            settings.queue,
            "--concurrency",
            str(settings.concurrency),
            "--pool",
            "prefork",
            "--loglevel",
            args.loglevel,
            "--without-gossip",
            "--without-mingle",
            "--hostname",
            node,
        ]
    )
    return 0
