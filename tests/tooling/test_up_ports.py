"""`qt up` on a taken port refuses before it starts or creates anything, naming the port."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.tooling.harness import QtUp
from tooling.up import port_taken


@pytest.mark.parametrize(("which", "what"), [("port", "NATS client port"), ("monitor_port", "NATS monitor port"),
                                             ("http_port", "gateway HTTP port")])
def test_taken_port_is_named_and_nothing_starts(tmp_path: Path, platforms: list[QtUp], which: str,
                                                what: str) -> None:
    platform = QtUp(tmp_path / "data")
    with socket.socket() as squatter:  # a plain listener, not a nats-server: any owner must be refused
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        setattr(platform, which, taken)
        platforms.append(platform.start())
        code = platform.wait_exit(timeout_s=60)
    text = "\n".join(platform.output)
    assert code == 1, text
    assert f"error unavailable: port {taken} ({what}" in text and "already in use" in text, text
    assert "nats-server started" not in text and "[qt]" not in text, text
    others = [p for p in (platform.port, platform.monitor_port, platform.http_port) if p != taken]
    assert not [p for p in others if port_taken("127.0.0.1", p)], "something listens on another port"
    assert not platform.data_dir.exists()  # refused before creating the data dir, secrets or logs
