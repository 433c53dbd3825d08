"""`qt bench matching` judging: orders/s submitted and the replay rate, issue 10's two rows."""

from __future__ import annotations

from pathlib import Path

from tooling.bench.matching_tables import EnginesRun, Results, engines_section, targets, why
from tooling.bench.stats import Run


def _results(submitted: float, replayed_in_s: float) -> Results:
    res = Results()
    res.closed[64] = Run("64 clients", int(submitted), 0, 1.0, 0.001, 0.002, 0.003)
    res.replay_orders, res.replay_s, res.startup_s = 100_000, replayed_in_s + 0.5, 0.5
    return res


def test_two_rows_short_of_target_say_by_how_much_and_how_to_get_a_profile() -> None:
    submitted, replay = targets(_results(946.0, 10.0), 64)
    assert submitted.name == "journaled orders submitted, 64 clients (`matching.submit`)"
    assert not submitted.met and submitted.by == "0.09x" and "--profile-duration" in submitted.see
    assert replay.name == "replay rate, orders/s (start-up excluded)"
    assert not replay.met and replay.by == "0.20x" and replay.ours == "10,000/s"


def test_rows_on_target_are_met_and_point_at_the_profiles_taken() -> None:
    res = _results(12_000.0, 1.0)
    res.profile = res.replay_profile = Path("/nonexistent.prof")
    submitted, replay = targets(res, 64)
    assert submitted.met and replay.met
    assert submitted.see == "the profile of the node under load below"


def test_errors_in_the_submit_point_miss_the_target() -> None:
    res = _results(12_000.0, 1.0)
    res.closed[64] = Run("64 clients", 12_000, 5, 1.0)
    assert not targets(res, 64)[0].met


def test_a_replay_shorter_than_the_empty_start_up_is_judged_on_its_start_up_included_lower_bound() -> None:
    res = _results(12_000.0, 1.0)
    res.replay_s, res.startup_s = 2.9, 3.5  # noise: the subtraction has no meaning
    replay = targets(res, 64)[1]
    assert not replay.met and replay.by == "0.69x" and "a lower bound" in replay.ours
    res.replay_orders = 200_000  # 68,966/s even with start-up included
    assert targets(res, 64)[1].met


def test_the_spread_table_gives_each_layout_its_ratio_to_one_engine() -> None:
    one = EnginesRun(1, Run("5 clients", 5_000, 0, 1.0, p99=0.004), 50_000, 2.0)
    two = EnginesRun(2, Run("5 clients", 8_000, 1, 1.0, p99=0.003), 60_000, 1.5)

    section = engines_section({2: two, 1: one})

    assert section is not None
    assert [row[0] for row in section.rows] == ["1", "2"]
    assert section.rows[1][2:6] == ["8,000/s", "3.00 ms", "1", "1.60x"]
    assert section.rows[1][8:] == ["40,000/s", "1.60x"]
    assert engines_section({}) is None


def test_why_says_the_loop_was_not_the_limit_only_when_it_was_not_busy() -> None:
    res = _results(8_000.0, 1.0)
    res.node_us[64], res.server_cores[64] = (70.0, 70.0), 0.5  # 8,000/s x 70 µs: the loop busy 56%
    idle = why(res, 64)
    assert idle is not None and "busy 56% of the time" in idle and "0.50 cores" in idle

    res.node_us[64] = (120.0, 120.0)  # 96% busy: the loop is the limit, and the text says only that
    saturated = why(res, 64)
    assert saturated is not None and "tops out near 8,333 orders/s" in saturated and "busy" not in saturated
