"""Fencing for single-owner publishers: readers drop what an older lease holder still sends."""

from __future__ import annotations

from collections.abc import Mapping

from contracts.subjects import FENCE_HEADER


class FenceGate:
    """Remembers the highest lease token seen per partition; older tokens are stale writers."""

    def __init__(self) -> None:
        self._highest: dict[str, int] = {}

    def admit(self, partition: str, headers: Mapping[str, str] | None) -> bool:
        """True for a message from the current (or a newer) owner; False for a fenced-out one."""
        raw = (headers or {}).get(FENCE_HEADER, "")
        if not raw.isdigit():
            return False
        token = int(raw)
        if token < self._highest.get(partition, 0):
            return False
        self._highest[partition] = token
        return True
