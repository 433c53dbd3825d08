"""Fixtures of the `qt` CLI tests: real `qt up` processes, cleaned up by PID."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.tooling.harness import QtUp


@pytest.fixture
def platforms() -> Iterator[list[QtUp]]:
    """`qt up` processes a test starts; anything of theirs still alive is killed by PID after."""
    started: list[QtUp] = []
    try:
        yield started
    finally:
        for platform in started:
            platform.cleanup()
