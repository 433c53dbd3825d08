"""The shared limits table on its own: two handles of one file (as two workers have) see one bucket and one
count per key, a full neighbourhood forgets the least-spent bucket, and a dead worker's counts can be zeroed."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.ratelimit import TokenBucket
from gateway.settings import MAX_WORKERS, Settings
from gateway.shared import (
    ACCOUNT_SOCKETS,
    IP_BUCKETS,
    PROBE,
    SLOTS,
    SharedCounts,
    SharedFile,
    SharedLimiter,
    digest,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def table(tmp_path: Path) -> Path:
    path = tmp_path / "limits"
    SharedFile.create(path)
    return path


def test_two_workers_spend_one_bucket_and_it_refills_like_a_token_bucket(table: Path) -> None:
    clock = Clock()
    first, second = (SharedLimiter(SharedFile(table), IP_BUCKETS, 2.0, 4.0, clock) for _ in range(2))
    reference = TokenBucket(2.0, 4.0, clock.now)
    taken = [(first if n % 2 else second).take("ip:10.0.0.1") for n in range(5)]
    assert [d.allowed for d in taken] == [reference.take(clock.now).allowed for _ in range(5)]
    assert [d.allowed for d in taken] == [True, True, True, True, False]
    clock.now += 0.5  # one token accrued, whichever worker looks
    assert first.take("ip:10.0.0.1").allowed and not second.take("ip:10.0.0.1").allowed
    assert second.take("ip:10.0.0.2").allowed  # another key has its own bucket


def test_a_full_neighbourhood_forgets_the_least_spent_bucket(table: Path) -> None:
    clock = Clock()
    limiter = SharedLimiter(SharedFile(table), IP_BUCKETS, 0.001, 100.0, clock)
    home = digest("ip:first") % SLOTS
    crowd = [key for key in (f"ip:{n}" for n in range(2_000_000)) if digest(key) % SLOTS == home][:PROBE]
    assert len(crowd) == PROBE
    for spent, key in enumerate(crowd):  # key k spends k+1 tokens: none is full, the first is the least spent
        for _ in range(spent + 1):
            limiter.take(key)
    newcomer = next(key for key in (f"ip:x{n}" for n in range(2_000_000)) if digest(key) % SLOTS == home)
    assert limiter.take(newcomer).remaining == 99  # took over the least-spent slot, created full
    assert limiter.take(crowd[0]).remaining == 99  # forgotten: comes back full
    assert limiter.take(crowd[-1]).remaining == 100 - PROBE - 1  # the most spent one was kept


def test_counts_are_summed_over_workers_and_a_dead_workers_column_can_be_zeroed(table: Path) -> None:
    one, two = (SharedCounts(SharedFile(table), ACCOUNT_SOCKETS, worker) for worker in (0, 1))
    assert one.take("alice", 3) and two.take("alice", 3) and two.take("alice", 3)
    assert not one.take("alice", 3) and not two.take("alice", 3)
    assert one.take("bob", 3)
    two.clear_own()  # worker 1 died: its two sockets died with it
    assert one.take("alice", 3) and one.take("alice", 3) and not one.take("alice", 3)
    one.give_back("alice")
    assert two.take("alice", 3)


def test_a_worker_gives_back_only_what_it_counted(table: Path) -> None:
    one, two = (SharedCounts(SharedFile(table), ACCOUNT_SOCKETS, worker) for worker in (0, 1))
    assert one.take("carol", 1)
    two.give_back("carol")  # nothing of carol's on worker 1: a no-op, never below zero
    assert not two.take("carol", 1)


@pytest.mark.parametrize("workers", [0, MAX_WORKERS + 1])
def test_the_worker_count_is_bounded(workers: int) -> None:
    with pytest.raises(ValueError, match="QT_GATEWAY_WORKERS"):
        Settings(workers=workers)
