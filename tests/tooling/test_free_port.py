"""Test servers' ports: never one an outgoing connection can take before the server binds it."""

from __future__ import annotations

import socket

from tooling.natsserver import EPHEMERAL_RANGE_FILE, LOWEST_PORT, free_port


def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    ports = [free_port() for _ in range(200)]

    assert len(set(ports)) == len(ports)
    low = int(EPHEMERAL_RANGE_FILE.read_text().split()[0])  # Linux: the range client sockets take ports from
    assert all(LOWEST_PORT <= port < low for port in ports)
    for port in ports[:20]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))

