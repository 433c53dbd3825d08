"""The one retry schedule: doubling, capped, jittered within its bounds, restartable."""

from __future__ import annotations

from itertools import islice

import pytest

from mesh.backoff import Backoff


def test_delays_double_up_to_the_cap() -> None:
    assert list(islice(Backoff(initial_s=0.05, max_s=0.3).delays(), 5)) == [0.05, 0.1, 0.2, 0.3, 0.3]


def test_a_fresh_iterator_starts_over() -> None:
    backoff = Backoff(initial_s=0.1, max_s=1.0)
    first = backoff.delays()
    assert list(islice(first, 3)) == [0.1, 0.2, 0.4]
    assert next(backoff.delays()) == 0.1


def test_jitter_stays_within_its_fraction_of_each_delay() -> None:
    drawn = list(islice(Backoff(initial_s=1.0, max_s=8.0, jitter=0.5).delays(), 200))
    bounds = [min(2.0**i, 8.0) for i in range(200)]
    assert all(b / 2 <= d <= b for d, b in zip(drawn, bounds, strict=True))
    assert len(set(drawn)) > 1


@pytest.mark.parametrize("kwargs", [{"initial_s": 0}, {"initial_s": 3, "max_s": 2}, {"jitter": 1.5}])
def test_nonsense_schedules_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)
