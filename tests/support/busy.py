"""Holding a real worker's task running, without a kernel: a lock on its SQLite database.

A worker's task reads the database first; while another connection holds an exclusive lock, that
read waits (SQLite's busy timeout, 5 s), so the worker is busy for as long as the lock is held
(up to that timeout), then the task goes on.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def database_locked(data_dir: Path) -> Iterator[None]:
    connection = sqlite3.connect(data_dir / "api.sqlite3", isolation_level=None)
    try:
        connection.execute("BEGIN EXCLUSIVE")
        yield
        connection.execute("ROLLBACK")
    finally:
        connection.close()
