"""The engine is a pure function of the journal: a replay from zero, from any snapshot, or with
duplicated entries reaches the identical book, order records and results."""

from __future__ import annotations

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.instruments import INSTRUMENTS
from nodes.matching.engine import BATCH, CANCEL, NEW, REFUSALS_KEPT, REPLACE, InstrumentEngine, command_key

SPEC = INSTRUMENTS["BTC-USD"]
MID = 6_750_000


def entries() -> st.SearchStrategy[list[dict]]:
    new = st.builds(
        lambda i, acct, side, off, qty, tif, kind: {
            "op": NEW, "order_id": f"o{i}", "account": f"a{acct}", "side": side,
            "type": kind, "tif": "IOC" if kind == "MARKET" and tif == "GTC" else tif,
            "price": None if kind == "MARKET" else MID + off, "qty": qty * 1000, "post_only": False, "stp": "dc",
        },
        st.integers(0, 40), st.integers(0, 3), st.sampled_from(["BUY", "SELL"]), st.integers(-5, 5),
        st.integers(1, 5), st.sampled_from(["GTC", "GTC", "IOC", "FOK"]), st.sampled_from(["LIMIT"] * 5 + ["MARKET"]),
    )
    cancel = st.builds(lambda i, acct: {"op": CANCEL, "order_id": f"o{i}", "account": f"a{acct}"},
                       st.integers(0, 40), st.integers(0, 3))
    replace = st.builds(lambda i, acct, off, qty: {"op": REPLACE, "order_id": f"o{i}", "account": f"a{acct}",
                                                   "price": MID + off, "qty": qty * 1000},
                        st.integers(0, 40), st.integers(0, 3), st.integers(-5, 5), st.integers(1, 5))
    return st.lists(st.one_of(new, new, new, cancel, replace), min_size=1, max_size=80)


def _run(journal: list[dict], snapshot_at: int | None = None) -> InstrumentEngine:
    engine = InstrumentEngine(SPEC)
    for seq, entry in enumerate(journal, start=1):
        engine.apply(seq, entry)
        if seq == snapshot_at:  # through msgpack, as the node stores it
            engine = InstrumentEngine.restore(SPEC, msgpack.unpackb(msgpack.packb(engine.snapshot()),
                                                                     strict_map_key=False))
    return engine


def _state(engine: InstrumentEngine) -> tuple:
    return (engine.book.checksum(), engine.book.depth(50), engine.applied_seq,
            {k: (r.status, r.filled, r.qty, len(r.fills)) for k, r in engine.orders.items()}, engine.results)


@settings(max_examples=150, deadline=None)
@given(journal=entries(), data=st.data())
def test_replay_from_any_snapshot_is_identical_to_an_uninterrupted_run(
    journal: list[dict], data: st.DataObject
) -> None:
    at = data.draw(st.integers(1, len(journal)))
    assert _state(_run(journal, snapshot_at=at)) == _state(_run(journal))


@settings(max_examples=100, deadline=None)
@given(journal=entries(), data=st.data())
def test_a_command_journaled_twice_returns_its_first_result_and_changes_nothing(
    journal: list[dict], data: st.DataObject
) -> None:
    engine = InstrumentEngine(SPEC)
    for seq, entry in enumerate(journal, start=1):
        engine.apply(seq, entry)
    before = _state(engine)
    i = data.draw(st.integers(0, len(journal) - 1))
    key = command_key(journal[i])
    remembered = engine.results.get(key)

    again, reports = engine.apply(len(journal) + 1, journal[i])

    if remembered is not None:  # the command acted once: its answer is replayed, nothing changes
        assert reports == [] and again == remembered
        assert _state(engine)[:2] == before[:2]
    elif journal[i]["order_id"] not in engine.orders:  # its order never arrived: refused again, nothing changes
        assert again["reason"] == "unknown_order" and reports == [] and _state(engine)[:2] == before[:2]
    else:  # refused before its order arrived; now it acts on the order as it stands, and that answer is kept
        assert engine.results[key] == again and key not in engine.refusals


def test_fill_updates_both_orders_and_reports_in_journal_order() -> None:
    engine = InstrumentEngine(SPEC)
    engine.apply(1, {"op": NEW, "order_id": "s", "account": "bob", "side": "SELL", "type": "LIMIT",
                     "price": MID, "qty": 5000})
    result, reports = engine.apply(2, {"op": NEW, "order_id": "b", "account": "alice", "side": "BUY",
                                       "type": "LIMIT", "tif": "IOC", "price": MID, "qty": 3000})

    assert result["status"] == "filled" and result["fills"][0]["price"] == MID
    assert engine.orders["s"].status == "partially_filled" and engine.orders["s"].remaining == 2000
    assert [r["kind"] for r in reports] == ["accepted", "fill"]
    assert {r["orders_seq"] for r in reports} == {2}


def test_cancel_of_another_accounts_order_is_unknown_and_changes_nothing() -> None:
    engine = InstrumentEngine(SPEC)
    engine.apply(1, {"op": NEW, "order_id": "s", "account": "bob", "side": "SELL", "type": "LIMIT",
                     "price": MID, "qty": 5000})
    checksum = engine.book.checksum()

    result, reports = engine.apply(2, {"op": CANCEL, "order_id": "s", "account": "mallory"})

    assert (result["status"], result["reason"], reports) == ("rejected", "unknown_order", [])
    assert engine.book.checksum() == checksum and engine.orders["s"].status == "new"


def _batched(journal: list[dict], cuts: list[int]) -> list[dict]:
    """The same commands journaled as batch entries split at `cuts` (a batch of one keeps the single shape)."""
    entries, start = [], 0
    for end in sorted({c for c in cuts if 0 < c < len(journal)} | {len(journal)}):
        chunk = journal[start:end]
        entries.append(chunk[0] if len(chunk) == 1 else {"op": BATCH, "commands": chunk})
        start = end
    return entries


def _without_seq(engine: InstrumentEngine) -> tuple:
    """State that does not depend on how commands were grouped into journal entries."""
    results = {k: {**r, "journal_seq": None} for k, r in engine.results.items()}
    return (engine.book.checksum(), engine.book.depth(50),
            {k: (r.status, r.filled, r.qty, r.executed_value, r.fills) for k, r in engine.orders.items()}, results)


@settings(max_examples=150, deadline=None)
@given(journal=entries(), cuts=st.lists(st.integers(0, 80), max_size=20))
def test_batch_entries_apply_like_the_same_commands_one_entry_each(journal: list[dict], cuts: list[int]) -> None:
    single = InstrumentEngine(SPEC)
    single_reports = [r for seq, e in enumerate(journal, start=1) for r in single.apply_entry(seq, e)]
    batched = InstrumentEngine(SPEC)
    batched_reports = [r for seq, e in enumerate(_batched(journal, cuts), start=1)
                       for r in batched.apply_entry(seq, msgpack.unpackb(msgpack.packb(e)))]

    assert _without_seq(batched) == _without_seq(single)
    assert ([{**r, "orders_seq": None} for r in batched_reports]
            == [{**r, "orders_seq": None} for r in single_reports])


def test_a_batch_results_carry_its_sequence_and_its_reports_number_across_commands() -> None:
    engine = InstrumentEngine(SPEC)
    sell = {"op": NEW, "order_id": "s", "account": "bob", "side": "SELL", "type": "LIMIT", "price": MID, "qty": 5000}
    buy = {"op": NEW, "order_id": "b", "account": "alice", "side": "BUY", "type": "LIMIT", "price": MID, "qty": 3000}

    reports = engine.apply_entry(7, {"op": BATCH, "commands": [sell, buy, sell]})

    assert engine.applied_seq == 7
    assert engine.results["new:s"]["journal_seq"] == engine.results["new:b"]["journal_seq"] == 7
    assert [r["kind"] for r in reports] == ["accepted", "accepted", "fill"]  # the repeated `s` adds nothing
    assert engine.orders["s"].remaining == 2000


def test_an_unknown_order_cancel_is_not_remembered_as_the_keys_answer() -> None:
    engine = InstrumentEngine(SPEC)
    cancel = {"op": CANCEL, "order_id": "o1", "account": "a1"}
    first, _ = engine.apply(1, cancel)
    assert first["reason"] == "unknown_order" and command_key(cancel) not in engine.results
    engine.apply(2, {"op": NEW, "order_id": "o1", "account": "a1", "side": "SELL", "type": "LIMIT", "tif": "GTC",
                     "price": MID, "qty": 1000, "post_only": False, "stp": "dc"})
    second, _ = engine.apply(3, cancel)  # the same command key, journaled again

    assert second["status"] == "cancelled" and engine.results[command_key(cancel)] == second
    assert engine.book.depth(5) == ([], [])


def test_only_the_newest_refusals_are_kept() -> None:
    engine = InstrumentEngine(SPEC)
    cancels = [{"op": CANCEL, "order_id": f"o{n}", "account": "a1"} for n in range(REFUSALS_KEPT + 2)]
    for seq, cancel in enumerate([cancels[0], *cancels[2:], cancels[1], cancels[0]], start=1):
        engine.apply(seq, cancel)

    kept = list(engine.refusals)
    assert len(kept) == REFUSALS_KEPT and command_key(cancels[2]) not in kept  # the oldest went
    assert kept[-2:] == [command_key(cancels[1]), command_key(cancels[0])]  # refused again: newest again
    assert engine.results == {} and engine.book.depth(5) == ([], [])
