"""The engine's state packed by a forked child: exactly the state at the call, whatever the engine applies
after it, and a child that cannot finish is an error, never a short snapshot."""

from __future__ import annotations

import asyncio
import os

import msgpack
import pytest

from contracts.instruments import instrument
from nodes.matching.engine import InstrumentEngine
from nodes.matching.forked_pack import PackFailed, pack_in_child

SPEC = instrument("BTC-USD")


def order(n: int, side: str) -> dict[str, object]:
    return {"op": "new", "order_id": f"o{n}", "account": f"a{n % 7}", "side": side, "type": "limit",
            "price": SPEC.reference_price + (n % 5 - 2) * SPEC.tick, "qty": SPEC.min_qty * (1 + n % 3), "tif": "GTC"}


async def test_the_child_packs_the_state_at_the_call_while_the_engine_goes_on() -> None:
    engine = InstrumentEngine(SPEC)
    for n in range(1, 2_001):
        engine.apply_entry(n, order(n, "BUY" if n % 2 else "SELL"))
    expected = msgpack.packb(engine.snapshot())
    packed = pack_in_child(engine.snapshot)
    for n in range(2_001, 3_001):  # applied while the child packs: none of it may be in the snapshot
        engine.apply_entry(n, order(n, "SELL"))
    blob = await packed
    assert blob == expected
    restored = InstrumentEngine.restore(SPEC, msgpack.unpackb(blob, raw=False, strict_map_key=False))
    assert restored.applied_seq == 2_000 and engine.applied_seq == 3_000
    assert msgpack.packb(restored.snapshot()) == expected


async def test_a_child_that_fails_is_an_error_and_is_reaped() -> None:
    def broken() -> object:
        raise RuntimeError("out of memory, say")

    before = _children()
    with pytest.raises(PackFailed):
        await pack_in_child(broken)
    await asyncio.sleep(0)
    assert _children() == before, "no zombie left behind"


def _children() -> set[int]:
    """This process's children (zombies included), from /proc."""
    me = str(os.getpid())
    out = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as fh:
                    if fh.read().rsplit(")", 1)[1].split()[1] == me:
                        out.add(int(pid))
            except OSError:
                continue
    return out
