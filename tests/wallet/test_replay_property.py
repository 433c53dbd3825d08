"""Property: for any interleaving of events over several accounts and assets, with snapshots at
different points per asset, the projection, a replay from genesis, a replay from snapshots and a
reopened store all agree with a reference model, and the chain verifies."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.errors import QtError
from contracts.wallet import Credit, Debit, Deposit, Hold, Leg, LegKind, Release, Settle, Withdraw
from nodes.wallet.replay import rebuild, replay, stored, verify
from nodes.wallet.store import Command, EventStore

ACCOUNTS = ("a", "b")
ASSETS = ("USD", "BTC", "AAPL")


@dataclass
class Model:
    """The reference: balances and holds as plain dicts, refusing what would go negative."""

    available: dict[tuple[str, str], int] = field(default_factory=dict)
    held: dict[tuple[str, str], int] = field(default_factory=dict)
    holds: dict[str, tuple[str, str, int]] = field(default_factory=dict)

    def apply(self, command: Command) -> bool:
        """Apply all-or-nothing; False when the wallet must refuse it."""
        available, held, holds = dict(self.available), dict(self.held), dict(self.holds)
        ok = self._apply(command, available, held, holds)
        if ok:
            self.available, self.held, self.holds = available, held, holds
        return ok

    def _apply(self, command: Command, available: dict, held: dict, holds: dict) -> bool:
        if isinstance(command, Settle):
            return all(self._leg(leg, available, held, holds) for leg in command.legs)
        if isinstance(command, Release | Debit):
            kind = LegKind.DEBIT if isinstance(command, Debit) else LegKind.RELEASE
            leg = Leg(kind=kind, account=command.account, asset=command.asset, amount=command.amount,
                      hold_id=command.hold_id)
            return self._leg(leg, available, held, holds)
        key = (command.account, command.asset)
        if isinstance(command, Hold):
            if command.hold_id in holds or available.get(key, 0) < command.amount:
                return False
            holds[command.hold_id] = (*key, command.amount)
            available[key] = available.get(key, 0) - command.amount
            held[key] = held.get(key, 0) + command.amount
            return True
        sign = -1 if isinstance(command, Withdraw) else 1
        if available.get(key, 0) + sign * command.amount < 0:
            return False
        available[key] = available.get(key, 0) + sign * command.amount
        return True

    @staticmethod
    def _leg(leg: Leg, available: dict, held: dict, holds: dict) -> bool:
        key = (leg.account, leg.asset)
        if leg.kind is LegKind.CREDIT:
            available[key] = available.get(key, 0) + (leg.amount or 0)
            return True
        if leg.hold_id not in holds or holds[leg.hold_id][:2] != key:
            return False
        left = holds[leg.hold_id][2]
        amount = left if leg.amount is None else leg.amount
        if amount > left:
            return False
        holds[leg.hold_id] = (*key, left - amount)
        held[key] = held.get(key, 0) - amount
        if leg.kind is LegKind.RELEASE:
            available[key] = available.get(key, 0) + amount
        return True


amounts = st.integers(min_value=1, max_value=50)
hold_ids = st.sampled_from([f"h{i}" for i in range(6)])


def commands() -> st.SearchStrategy[Command]:
    account, asset = st.sampled_from(ACCOUNTS), st.sampled_from(ASSETS)
    leg = st.builds(Leg, kind=st.sampled_from(list(LegKind)), account=account, asset=asset,
                    amount=st.one_of(st.none(), amounts), hold_id=hold_ids)
    return st.one_of(
        st.builds(Deposit, account=account, asset=asset, amount=amounts, op_id=st.just("tbd")),
        st.builds(Withdraw, account=account, asset=asset, amount=amounts, op_id=st.just("tbd")),
        st.builds(Credit, account=account, asset=asset, amount=amounts, op_id=st.just("tbd")),
        st.builds(Hold, account=account, asset=asset, amount=amounts, hold_id=hold_ids, op_id=st.just("tbd")),
        st.builds(Release, account=account, asset=asset, amount=st.one_of(st.none(), amounts),
                  hold_id=hold_ids, op_id=st.just("tbd")),
        st.builds(Debit, account=account, asset=asset, amount=amounts, hold_id=hold_ids, op_id=st.just("tbd")),
        st.builds(Settle, legs=st.lists(leg, min_size=1, max_size=3), op_id=st.just("tbd")),
    )


def _valid(command: Command) -> bool:
    if isinstance(command, Settle):
        return all(
            (leg.kind is LegKind.CREDIT and leg.amount is not None)
            or (leg.kind is LegKind.RELEASE)
            or (leg.kind is LegKind.DEBIT and leg.amount is not None)
            for leg in command.legs
        )
    return True


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batches=st.lists(st.lists(commands().filter(_valid), min_size=1, max_size=6), min_size=1, max_size=30),
    snapshot_every=st.integers(min_value=2, max_value=7),
)
def test_projection_replays_and_restart_agree_with_the_model(
    batches: list[list[Command]], snapshot_every: int
) -> None:
    model = Model()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "wallet.sqlite"
        store = EventStore(path, snapshot_every=snapshot_every, synchronous="NORMAL")
        n = 0
        for batch in batches:
            numbered = [c.model_copy(update={"op_id": f"op{n + i}"}) for i, c in enumerate(batch)]
            n += len(batch)
            outcomes = store.execute_batch([(c, None) for c in numbered])
            for command, outcome in zip(numbered, outcomes, strict=True):
                assert model.apply(command) == (outcome.error is None), (command, outcome.error)
                assert outcome.error is None or isinstance(outcome.error, QtError)
        store.close()

        reopened = EventStore(path, snapshot_every=snapshot_every, synchronous="NORMAL")
        db = reopened.db
        for account in ACCOUNTS:
            for asset in ASSETS:
                key = (account, asset)
                have = stored(db, key)
                assert (have.available, have.held) == (model.available.get(key, 0), model.held.get(key, 0))
                from_genesis, _, _ = replay(db, key, use_snapshot=False)
                from_snapshot, _, _ = replay(db, key, use_snapshot=True)
                assert from_genesis == from_snapshot == have
        report = rebuild(db)
        assert report.identical, report.mismatches
        assert verify(db, ledger=reopened.ledger_id).ok
        after = reopened.execute_batch([(Deposit(account="a", asset="USD", amount=1, op_id="last"), None)])
        assert after[0].error is None
        assert verify(db, ledger=reopened.ledger_id).ok
        reopened.close()
