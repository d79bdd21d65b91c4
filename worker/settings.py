"""The worker's settings: one typed object, from `OASIS_AUTOSCALER_*` variables and CLI flags."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.storage import database_url


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OASIS_AUTOSCALER_", extra="ignore")

    # Shared with the API: the same data dir (a ReadWriteMany volume on Kubernetes), database
    # and broker.
    data_dir: Path = Path.home() / ".local" / "share" / "oasis-autoscaler"
    database_url: str | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    # The model queue this worker consumes (<supplier>-<model>-<version>).
    queue: str | None = None
    # This model's data (a keys_data/ and model_data/ folder with lookup_config.json and
    # model_settings.json); unset: the built-in demo model.
    model_data_dir: Path | None = None
    concurrency: int = Field(default=1, ge=1)
    # Above the longest chunk: a message not acknowledged by then is delivered again.
    visibility_timeout_seconds: int = Field(default=6 * 3600, ge=1)
    # A failing sub-task is tried again after 2, 4, 8, ... seconds, up to this many times.
    max_retries: int = Field(default=3, ge=0)
    retry_backoff_seconds: float = Field(default=2.0, ge=0)
    # On Kubernetes (from the downward API): the worker marks its own pod's deletion cost, high
    # while it runs a task, so that a scale-down removes idle pods first. Unset: not marked.
    pod_name: str | None = None
    pod_namespace: str | None = None
    # The pod's service account token and the API server's CA (in-cluster config) are here.
    kubernetes_service_account_dir: Path = Path("/var/run/secrets/kubernetes.io/serviceaccount")
    # Kernel pipelines for a stage that is not split (one chunk): every core when unset.
    processes: int | None = Field(default=None, ge=1)
    # numba's compiled kernel survives restarts here, a folder per CPU type (worker/numba_cache.py);
    # unset: the user's cache folder, shared by every data dir.
    numba_cache_dir: Path | None = None
    # A numba cache root built ahead (the image's, read-only): its folder for this CPU type is
    # copied into numba_cache_dir when that has none, instead of compiling.
    numba_cache_seed_dir: Path | None = None
    # Run the kernel's tools in a warm process per pool process that forks per tool run
    # (docs/warm-kernel.md); false: each tool starts cold, as oasislmf runs it.
    warm_kernel: bool = True
    # A new worker takes no sub-task until its pool processes are warm (worker/warm_gate.py),
    # waiting at most this long; 0: it takes work at once.
    warm_up_wait_seconds: float = Field(default=60.0, ge=0)
    # The worker's record of presence in Redis (worker/presence.py) is rewritten this often and
    # expires this long after the last rewrite: a killed worker is gone from it within the TTL.
    presence_refresh_seconds: float = Field(default=5.0, gt=0)
    presence_ttl_seconds: float = Field(default=15.0, gt=0)
    # How often the worker puts back queued sub-tasks whose messages the broker lost
    # (worker/reconcile.py); 0: never.
    reconcile_seconds: float = Field(default=30.0, ge=0)

    @property
    def effective_database_url(self) -> str:
        return database_url(self.database_url, self.data_dir)

    @property
    def effective_numba_cache_dir(self) -> Path:
        return self.numba_cache_dir or user_cache_dir() / "oasis-autoscaler" / "numba"


def user_cache_dir() -> Path:
    """The user's cache folder (XDG: $XDG_CACHE_HOME, else ~/.cache)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
