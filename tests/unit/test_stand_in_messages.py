"""The stand-in's request and the warm process's reading of it: exact, and strict."""

from __future__ import annotations

import os

import pytest

from worker import stand_in
from worker.stand_in import HEADER
from worker.zygote import parse_request


def test_a_request_carries_argv_folder_and_environment_exactly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str]
) -> None:
    odd = os.fsdecode(b"caf\xe9")  # not UTF-8: kept as the system gave it
    monkeypatch.setattr("sys.argv", ["/x/bin/summarypy", "-t", "gul", "", "a=b", odd])
    monkeypatch.setenv("WITH_EQUALS", "k=v=w")
    monkeypatch.setenv("EMPTY", "")
    monkeypatch.chdir(tmp_path)
    message = stand_in.request("summarypy")
    (length,) = HEADER.unpack_from(message)
    assert length == len(message) - HEADER.size
    request = parse_request(message[HEADER.size :])
    assert request["argv"] == ["summarypy", "-t", "gul", "", "a=b", odd]
    assert request["cwd"] == os.getcwd()
    assert request["env"] == dict(os.environ)


@pytest.mark.parametrize(
    "body",
    [b"", b"x\0tool\0/", b"0\0/", b"2\0tool\0/", b"1\0tool\0/\0NO_EQUALS"],
    ids=["empty", "no count", "no arguments", "count beyond the fields", "variable without ="],
)
def test_a_malformed_request_is_refused(body: bytes) -> None:
    with pytest.raises(ValueError):
        parse_request(body)
