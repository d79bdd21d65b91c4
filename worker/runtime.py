"""What a worker process needs at hand: its settings, the database, the storage and its model.

Set once per process by `configure_runtime` (the worker command does it before Celery starts,
and the pool's processes inherit it); tasks reach it through `current()`.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from redis import Redis
from sqlalchemy.orm import Session, sessionmaker

from api.store.engine import make_engine
from worker import numba_cache, warm_kernel
from worker.activity import connect
from worker.demo_model import DemoModel, ensure_demo_model, model_files
from worker.settings import WorkerSettings
from worker.storage import Storage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    settings: WorkerSettings
    sessions: sessionmaker[Session]
    storage: Storage
    model: DemoModel
    # Where sub-task metrics are recorded (worker/activity.py): the broker's Redis.
    redis: Redis

    @property
    def numba_cache_dir(self) -> Path:
        """This CPU type's folder of the numba cache, built first if it is not (once)."""
        settings = self.settings
        return numba_cache.ensure_built(
            settings.effective_numba_cache_dir.absolute(), settings.numba_cache_seed_dir
        )

    def kernel_tools(self) -> AbstractContextManager[Path | None]:
        """For one kernel step: the warm kernel's tools folder (started, or started again, if
        needed, and watched during the step); None when the warm kernel is off."""
        if not self.settings.warm_kernel:
            return nullcontext(None)
        return warm_kernel.running(self.numba_cache_dir)


_current: Runtime | None = None


def configure_runtime(settings: WorkerSettings) -> Runtime:
    global _current
    storage = Storage(settings.data_dir)
    if settings.model_data_dir is not None:
        model = model_files(settings.model_data_dir.absolute())
        log.info("running the model whose data is in %s", settings.model_data_dir)
    else:
        model = ensure_demo_model(storage.root / "demo-model")
        log.info(
            "no model data given (OASIS_AUTOSCALER_MODEL_DATA_DIR): running the built-in "
            "demo model in %s",
            model.model_data_dir.parent,
        )
    engine = make_engine(settings.effective_database_url)
    _current = Runtime(
        settings,
        sessionmaker(engine, expire_on_commit=False),
        storage,
        model,
        connect(settings.redis_url),
    )
    return _current


def current() -> Runtime:
    if _current is None:
        return configure_runtime(WorkerSettings())
    return _current
