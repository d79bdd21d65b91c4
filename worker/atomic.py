"""Publishing files and folders all at once, so a step that runs twice leaves them once.

Every result is built under a private temporary name beside its target and then renamed into
place. A rename within one filesystem is atomic: readers see nothing or the whole result, never
a half-written one, and a step killed half-way leaves only a temporary name behind. When two
attempts race, the first rename wins and the other attempt's copy is thrown away.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

TEMPORARY_MARK = ".tmp-"


def temporary_sibling(target: Path) -> Path:
    """A fresh name in the target's folder, hidden, and unique to this attempt."""
    return target.parent / f".{target.name}{TEMPORARY_MARK}{uuid.uuid4().hex}"


@contextmanager
def scratch_dir(target: Path) -> Iterator[Path]:
    """A private folder beside `target`, removed on exit whatever happens."""
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = temporary_sibling(target)
    scratch.mkdir()
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def publish_dir(built: Path, target: Path) -> bool:
    """Rename the finished folder `built` to `target`; False if `target` was there already.

    The loser of a race keeps nothing: its folder is removed, the winner's stays.
    """
    try:
        os.rename(built, target)
    except OSError as error:
        if error.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not target.is_dir():
            raise
        shutil.rmtree(built, ignore_errors=True)
        return False
    return True


def build_dir(target: Path, build: Callable[[Path], None]) -> bool:
    """Make `target` with `build(folder)` unless it exists; True if this call published it."""
    if target.is_dir():
        return False
    with scratch_dir(target) as scratch:
        built = scratch / target.name
        built.mkdir()
        build(built)
        return publish_dir(built, target)


def write_bytes(target: Path, data: bytes) -> None:
    """Write `target` whole: a temporary file, flushed, then renamed over any old one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = temporary_sibling(target)
    try:
        with open(partial, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def write_text(target: Path, text: str) -> None:
    write_bytes(target, text.encode("utf-8"))
