"""The numba cache the tests share with the workers of this machine.

The product's default root (the user's cache folder, worker/numba_cache.py), so that a machine
compiles the kernel once whatever the clone or the data dir; `.ci/run` builds this CPU's folder
before the test tiers, so no test pays the build inside its timeout.
"""

from __future__ import annotations

from pathlib import Path

from worker.settings import WorkerSettings


def numba_cache_root() -> Path:
    return WorkerSettings().effective_numba_cache_dir.absolute()
