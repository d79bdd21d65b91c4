"""`free_port`: ports for servers the stack and the tests start, outside the ephemeral range."""

from __future__ import annotations

import socket

from cli.local.launch import FREE_PORT_FLOOR, _ephemeral_low, free_port


def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    low = _ephemeral_low()
    assert all(FREE_PORT_FLOOR <= port < low for port in ports)
    for port in ports[:5]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
