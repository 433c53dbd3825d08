"""Which build of the book runs: the compiled one when it is built from the current source, else book.py."""

from __future__ import annotations

import hashlib
from pathlib import Path

from nats.aio.client import Client

from nodes.matching import BOOK_BUILD
from nodes.matching.book_build import choose
from tests.matching.conftest import in_ci
from tests.matching.node_client import matching, start_matching
from tests.procs import NodeProcess
from tooling.natsserver import NatsServer


def serving_line(data_dir: Path) -> str:
    return next(ln for ln in (data_dir / "nodes.matching.log").read_text().splitlines() if "matching serving" in ln)


async def test_the_node_runs_the_compiled_book_in_ci(own_nats: NatsServer, own_nc: Client, tmp_path: Path,
                                                     processes: list[NodeProcess]) -> None:
    processes.append(await start_matching(own_nats, tmp_path / "matching", own_nc))
    status = await matching(own_nc, "status")
    assert status["book"] == BOOK_BUILD.kind  # the node process selects as this one does
    assert f"book={BOOK_BUILD.kind}" in serving_line(tmp_path / "matching")
    if in_ci():  # CI has gcc: the install compiled the book, and the node must be running that build
        assert status["book"] == "compiled", BOOK_BUILD.reason


async def test_qt_pure_book_makes_the_node_run_book_py(own_nats: NatsServer, own_nc: Client, tmp_path: Path,
                                                       processes: list[NodeProcess]) -> None:
    processes.append(await start_matching(own_nats, tmp_path / "matching", own_nc, QT_PURE_BOOK="1"))
    assert (await matching(own_nc, "status"))["book"] == "python"
    assert "book=python" in serving_line(tmp_path / "matching")


def test_an_extension_older_than_its_source_is_not_loaded(tmp_path: Path) -> None:
    source, extension, stamp = tmp_path / "book.py", tmp_path / "book.cpython-311-x86_64-linux-gnu.so", tmp_path / "s"
    source.write_text("print('v1')\n")
    extension.write_bytes(b"")
    stamp.write_text(hashlib.sha256(source.read_bytes()).hexdigest())
    assert choose(source, extension, stamp, pure=False).kind == "compiled"
    assert choose(source, extension, stamp, pure=True).kind == "python"
    source.write_text("print('v2')\n")  # edited after the build: the extension would shadow the edit
    assert choose(source, extension, stamp, pure=False).kind == "python"
    assert "stale" in choose(source, extension, stamp, pure=False).reason
    assert choose(source, None, stamp, pure=False).kind == "python"
    stamp.unlink()
    assert choose(source, extension, stamp, pure=False).kind == "python"
