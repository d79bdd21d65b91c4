"""The progress sink takes oasislmf's pings without an error and holds nothing up."""

from __future__ import annotations

import json
import socket

from oasislmf.utils.ping import oasis_ping_socket

from worker.progress_sink import progress_sink


def test_every_ping_of_a_step_gets_through() -> None:
    with progress_sink() as environment:
        target = (
            environment["OASIS_SOCKET_SERVER_IP"],
            int(environment["OASIS_SOCKET_SERVER_PORT"]),
        )
        sent = [oasis_ping_socket(target, json.dumps({"events_total": n})) for n in range(20)]
    assert sent == [True] * 20


def test_the_sink_is_gone_when_its_step_ends() -> None:
    with progress_sink() as environment:
        port = int(environment["OASIS_SOCKET_SERVER_PORT"])
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
