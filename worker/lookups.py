"""A chunk's lookup: oasislmf's key server on a frame of locations, its built-in lookup kept warm.

oasislmf's built-in lookup (`oasislmf.lookup.builtin.Lookup`) builds each step of its strategy
as numba closures, compiled at their first call: about 0.3 s of CPU every time a lookup is
built, where the lookup of a 250-location chunk takes about 0.07 s. `generate_key_files` builds
a new lookup for every call, so every lookup chunk paid the compilation again. A worker process
keeps the built-in lookup it built, per lookup configuration, and lends it to the key server
for every later chunk: oasislmf's own multiprocess lookup does the same, one lookup per process
over many partitions of the locations. A model's own lookup class (or key server) is built afresh
each time, as before: it may write to its output folder, which differs per chunk; the built-in
one does not.

A kept lookup is valid while its configuration file is unchanged (its path, size and
modification time are its key); model data the configuration names is read once, so a model
whose data changes in place needs its workers restarted, as its code does.
"""

from __future__ import annotations

import os
import tempfile
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

KEPT_LOOKUPS: Final = 4  # lookup configurations kept per process, the least recently used go


@dataclass
class _Kept:
    lookup: Any
    # numba's cache folder for the lookup's closures, for as long as they live (see below).
    scratch: tempfile.TemporaryDirectory[str]


_kept: OrderedDict[tuple[str, int, int], _Kept] = OrderedDict()


def generate_keys(
    lookup_config: Path, frame: Any, folder: Path, *, whole: bool, keys: str, errors: str
) -> None:
    """Write the keys (`folder/keys`) and key errors (`folder/errors`) of the locations in
    `frame`; `whole` lets oasislmf use every core (one lookup per core, none kept)."""
    # Imported before numba's cache moves: the lookup's module-level functions keep the usual one.
    from oasislmf.lookup.factory import KeyServerFactory  # type: ignore[import-untyped]

    identity = None if whole else _identity(lookup_config)
    kept = _kept.get(identity) if identity else None
    if kept and identity:
        _kept.move_to_end(identity)
    scratch = kept.scratch if kept else tempfile.TemporaryDirectory(prefix="oasis-lookup-numba-")
    try:
        with _numba_cache_in(scratch.name):
            _, key_server = KeyServerFactory.create(
                lookup_config_fp=str(lookup_config), output_directory=str(folder)
            )
            if kept is None and identity and _is_builtin(key_server):
                kept = _keep(identity, _Kept(_build(key_server), scratch))
            if kept:
                lent = kept.lookup
                key_server.create_lookup = lambda *_, **__: lent
            key_server.generate_key_files(
                location_df=frame,
                successes_fp=str(folder / keys),
                errors_fp=str(folder / errors),
                output_format="oasis",
                keys_success_msg=False,
                multiproc_enabled=whole,
            )
    finally:
        if kept is None:  # a kept lookup keeps its folder
            scratch.cleanup()


def forget() -> None:
    """Drop every kept lookup (and its numba folder)."""
    while _kept:
        _, dropped = _kept.popitem()
        dropped.scratch.cleanup()


def kept_count() -> int:
    return len(_kept)


@contextmanager
def _numba_cache_in(folder: str) -> Iterator[None]:
    """Point numba's cache at `folder` while a lookup is built and run.

    oasislmf's built-in lookup compiles closures with `cache=True` each time it is built. Their
    cache can never be hit (their argument types are other closures, new in every lookup), so
    each lookup only adds an entry to an index in numba's cache folder (the worker's
    NUMBA_CACHE_DIR, else beside oasislmf's code); once about 64 are there, saving one fails
    ("underlying object has vanished": numba rebuilds every entry's functions and keeps only the
    128 most recent alive), and from then on every lookup that shares the folder fails. A
    closure takes its folder when it is made, so a kept lookup keeps its folder.
    """
    from numba.core import config as numba_config

    config: Any = numba_config  # its settings are set at import, unknown to type checkers
    saved, environment = config.CACHE_DIR, os.environ.get("NUMBA_CACHE_DIR")
    config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"] = folder
    try:
        yield
    finally:
        config.CACHE_DIR = saved
        if environment is None:
            os.environ.pop("NUMBA_CACHE_DIR", None)
        else:
            os.environ["NUMBA_CACHE_DIR"] = environment


def _identity(lookup_config: Path) -> tuple[str, int, int]:
    status = lookup_config.stat()
    return str(lookup_config), status.st_size, status.st_mtime_ns


def _is_builtin(key_server: Any) -> bool:
    """oasislmf's own key server and built-in lookup (a model may bring either)."""
    from oasislmf.lookup.builtin import Lookup  # type: ignore[import-untyped]
    from oasislmf.lookup.factory import BasicKeyServer

    return type(key_server) is BasicKeyServer and key_server.lookup_cls is Lookup


def _build(key_server: Any) -> Any:
    """The lookup the key server would build for a single-process run."""
    return key_server.create_lookup(
        key_server.lookup_cls,
        key_server.config,
        key_server.config_dir,
        key_server.user_data_dir,
        key_server.output_dir,
        lookup_id=None,
    )


def _keep(identity: tuple[str, int, int], kept: _Kept) -> _Kept:
    _kept[identity] = kept
    while len(_kept) > KEPT_LOOKUPS:
        _, dropped = _kept.popitem(last=False)
        dropped.scratch.cleanup()
    return kept
