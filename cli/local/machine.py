"""How many worker processes this machine can run: the local stack's default worker budget.

budget = max(1, min(cores x 2, (available memory - 1 GiB) / 1 GiB))

- cores: those this process may run on. A worker runs one chunk at a time and a chunk's kernel
  pipeline keeps about one core busy, waiting on its pipes part of the time: two per core keep
  the cores busy without making every chunk take twice as long.
- memory: MemAvailable from /proc/meminfo, less 1 GiB for Redis, the API, the scaler and `up`;
  a worker takes 150-500 MB and its chunk's kernel pipeline about 400 MB more, so 1 GiB each.

`--total-worker-limit` (or OASIS_AUTOSCALER_TOTAL_WORKER_LIMIT, or the scaler's own
OASIS_AUTOSCALER_SCALER_TOTAL_WORKER_LIMIT) sets it instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

GIB: Final = 1024**3
WORKERS_PER_CORE: Final = 2
WORKER_BYTES: Final = GIB
RESERVED_BYTES: Final = GIB
MEMINFO: Final = Path("/proc/meminfo")


@dataclass(frozen=True)
class Budget:
    workers: int
    reason: str


def worker_budget(cores: int, available_bytes: int) -> Budget:
    by_cores = cores * WORKERS_PER_CORE
    by_memory = max(0, available_bytes - RESERVED_BYTES) // WORKER_BYTES
    workers = max(1, min(by_cores, by_memory))
    reason = (
        f"{cores} cores x {WORKERS_PER_CORE} = {by_cores}; "
        f"({available_bytes / GIB:.1f} GiB available - 1 GiB) / 1 GiB = {by_memory}"
    )
    return Budget(workers, reason)


def this_machine() -> Budget:
    return worker_budget(len(os.sched_getaffinity(0)), available_memory())


def available_memory() -> int:
    """MemAvailable in bytes (the kernel's estimate of what can be used without swapping)."""
    for line in MEMINFO.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{MEMINFO} has no MemAvailable line")
