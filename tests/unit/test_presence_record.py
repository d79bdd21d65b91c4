"""A worker's presence record read back (worker/presence.py `parse`): whether it is warming."""

from __future__ import annotations

import pytest

from worker.presence import parse

IDENTITY = {b"node": b"q.1@host", b"pid": b"1", b"queue": b"q", b"idle_since": b"100.0"}


@pytest.mark.parametrize(
    ("fields", "warming"),
    [
        ({}, False),  # a record from before the field, or rewritten whole by a pool process
        ({b"warming": b"1"}, True),
        ({b"warming": b"0"}, False),
        ({b"warming": b"1", b"busy:7": b"120.0"}, True),
        ({b"warming": b"yes"}, False),  # only the main process writes it, as "1" or "0"
    ],
)
def test_warming_is_read_from_the_record(fields: dict[bytes, bytes], warming: bool) -> None:
    worker = parse({**IDENTITY, **fields})
    assert worker is not None
    assert worker.warming is warming
    assert worker.busy is (b"busy:7" in fields)
