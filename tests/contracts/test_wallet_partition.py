"""`wallet_partition`: FNV-1a (32-bit) of the account mod P, the one routing function every caller uses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.subjects import wallet_account_subject, wallet_partition, wallet_subject

accounts = st.text(min_size=1, max_size=64)


def fnv1a_32(data: bytes) -> int:
    """The reference algorithm, written out independently of the one under test."""
    h = 2166136261
    for byte in data:
        h ^= byte
        h = (h * 16777619) % 2**32
    return h


@pytest.mark.parametrize(("account", "digest"), [
    # published FNV-1a 32-bit test vectors: a changed hash would move every account to another ledger
    ("a", 0xE40C292C), ("foobar", 0xBF9CF968),
])
def test_known_vectors_fix_the_hash(account: str, digest: int) -> None:
    assert fnv1a_32(account.encode()) == digest
    assert wallet_partition(account, 2**32 - 1) == digest % (2**32 - 1)


@given(accounts, st.integers(min_value=1, max_value=64))
def test_partition_is_in_range_and_the_reference_hash_mod_p(account: str, partitions: int) -> None:
    partition = wallet_partition(account, partitions)

    assert 0 <= partition < partitions
    assert partition == fnv1a_32(account.encode()) % partitions


@given(accounts)
def test_one_partition_owns_everything(account: str) -> None:
    assert wallet_partition(account, 1) == 0


@given(accounts, st.integers(min_value=1, max_value=8))
def test_the_subject_is_the_owning_partitions(account: str, partitions: int) -> None:
    assert wallet_account_subject("balance", account, partitions) == \
        wallet_subject("balance", wallet_partition(account, partitions))


def test_accounts_spread_over_two_partitions() -> None:
    owners = [wallet_partition(f"acct{n}", 2) for n in range(1000)]

    assert 400 < owners.count(0) < 600  # deterministic: the same 1,000 names always split the same way


def test_a_partition_count_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="partitions must be >= 1"):
        wallet_partition("alice", 0)
