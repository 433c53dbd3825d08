"""`qt bench gateway` WebSocket judging: staleness per book seq over conflated frames, and the gateway rows."""

from __future__ import annotations

from array import array

import pytest

from tooling.bench.gateway_clients import SNAPSHOT, UPDATE, Feed, Frames
from tooling.bench.gateway_fanout import Window, analyse, first_covering, staleness
from tooling.bench.gateway_tables import Results, targets
from tooling.bench.gateway_ws import Driven, Usage
from tooling.bench.stats import Run

USAGE = Usage({"gateway": 0.5, "subscribers": 0.5}, 0.0, 1.0)


def test_a_spanning_frame_covers_every_seq_it_skipped() -> None:
    assert first_covering([11, 12, 13, 14], [(11, 1.0), (13, 2.0), (14, 2.5)]) == [1.0, 2.0, 2.0, 2.5]


def test_a_seq_no_frame_reached_is_not_covered_and_an_older_frame_brings_nothing() -> None:
    assert first_covering([11, 12], [(11, 1.0), (10, 1.5)]) == [1.0, None]


def test_staleness_runs_from_each_seqs_publish_to_the_first_frame_reaching_it() -> None:
    published = {11: 1.00, 12: 1.01, 13: 1.02}
    delays, last = staleness(published, [[(11, 1.005), (13, 1.030)], [(13, 1.040)]])
    assert delays == pytest.approx(sorted([0.005, 0.020, 0.010, 0.040, 0.030, 0.020]))
    assert last == 1.040


def _frames(rows: list[tuple[int, int, float, int]], closed: list[tuple[int, float, int, str]] | None = None) -> Frames:
    f = Frames()
    for conn, seq, at, kind in rows:
        f.conn.append(conn)
        f.seq.append(seq)
        f.at.append(at)
        f.kind.append(kind)
    f.closed = closed or []
    return f


def _feed(seqs: list[int], at: list[float]) -> Feed:
    return Feed(seq=array("q", seqs), prev=array("q", [s - 1 for s in seqs]), deltas=array("I", [1] * len(seqs)),
                at=array("d", at))


def _synthetic() -> Driven:
    driven = Driven(1000.0, started=10.0, stopped=10.003, source="synthetic")
    for k, seq in enumerate((101, 102, 103)):
        driven.caused(seq, 10.0 + k / 1000)
        driven.published[seq] = 10.0 + k / 1000
    return driven


def test_a_lagging_subscriber_caught_up_by_a_snapshot_counts_as_delivered() -> None:
    frames = _frames([(0, 100, 9.0, SNAPSHOT),  # before the load: its first snapshot, not counted
                      (0, 101, 10.001, UPDATE), (0, 102, 10.002, UPDATE), (0, 103, 10.003, UPDATE),
                      (1, 100, 9.0, SNAPSHOT), (1, 103, 10.050, SNAPSHOT)])  # conflated: one snapshot for three
    w = analyse(_synthetic(), _feed([101, 102, 103], [10.0005, 10.0015, 10.0025]), [frames], 2, connect_s=1.0,
                usage=USAGE, rss_max_kb=1, rss_end_kb=1)
    assert (w.expected, w.delivered, w.updates, w.snapshots, w.dropped) == (6, 6, 3, 1, 0)
    assert w.delays[-1] == pytest.approx(0.050)  # seq 101's staleness on the lagging connection
    assert w.published_by_bench


def test_a_subscriber_closed_during_the_load_leaves_seqs_unreached_and_is_dropped() -> None:
    frames = _frames([(0, 101, 10.001, UPDATE), (0, 103, 10.004, UPDATE), (1, 101, 10.001, UPDATE)],
                     closed=[(1, 10.0015, 4408, "slow")])
    w = analyse(_synthetic(), _feed([101, 102, 103], [10.0005, 10.0015, 10.0025]), [frames], 2, connect_s=1.0,
                usage=USAGE, rss_max_kb=1, rss_end_kb=1)
    assert (w.expected, w.delivered, w.dropped) == (6, 4, 1)


def test_commands_of_one_journal_batch_are_timed_from_the_first_sent() -> None:
    driven = Driven(200.0, started=0.0, stopped=1.0)
    driven.caused(7, 0.30)
    driven.caused(7, 0.10)
    driven.caused(7, 0.20)
    assert driven.sent_at == {7: 0.10}


def test_the_engine_feed_is_timed_from_the_tap_and_commands_from_their_first_send() -> None:
    driven = Driven(200.0, started=10.0, stopped=11.0)
    driven.caused(5, 10.0)
    driven.caused(5, 10.004)
    frames = _frames([(0, 5, 10.020, UPDATE)])
    w = analyse(driven, _feed([4, 5], [9.5, 10.010]), [frames], 1, connect_s=1.0, usage=USAGE, rss_max_kb=1,
                rss_end_kb=1)
    assert w.feed_messages == 1  # seq 4 arrived before the load started
    assert w.delays == pytest.approx([0.010]) and w.from_send == pytest.approx([0.020])
    assert not w.published_by_bench


def _window(p99: float, dropped: int = 0, delivered: int = 2_500_000) -> Window:
    return Window(source="synthetic", offered=1000.0, duration_s=5.0, commands=5000, command_errors=0,
                  driver_late_s=0.0, feed_messages=5000, level_changes=5000, subscribers=500, connect_s=1.0,
                  expected=2_500_000, delivered=delivered, updates=2_000_000, snapshots=1000,
                  closed=[(0, 1.0, 4408, "slow")] * dropped, delays=[0.001] * 98 + [p99] * 2, from_send=[],
                  usage=USAGE, rss_max_kb=1, rss_end_kb=1)


def _gateway(nats_rate: float, http_rate: float, http_p50: float, window: Window) -> Results:
    res = Results(rate=1000.0, subscribers=500, ws_procs=2, compression=False)
    for n in (1, 64):
        res.runs[f"nats {n}"] = Run("n", int(nats_rate), 0, 1.0, 0.010, 0.020, 0.030)
        res.runs[f"http {n}"] = Run("h", int(http_rate), 0, 1.0, http_p50, 0.040, 0.050)
    res.windows.append(window)
    return res


def test_gateway_rows_on_target_are_met() -> None:
    rows = targets(_gateway(1000.0, 800.0, 0.0115, _window(0.030)))
    assert [t.name for t in rows] == [
        "gateway overhead vs raw NATS at p50, 1 client",
        "HTTP place-order sagas/s vs raw NATS in this run, 64 clients",
        "WS p99 staleness (update and snapshot frames), 500 subscribers at 1,000/s updates",
        "WS subscribers dropped at 1,000/s updates",
    ]
    assert all(t.met for t in rows), rows


def test_gateway_rows_off_target_say_by_how_much() -> None:
    overhead, share, stale, dropped = targets(_gateway(1000.0, 350.0, 0.023, _window(0.100, dropped=3)))
    assert not overhead.met and overhead.by == "6.50x"  # 13 ms added against 2 ms
    assert not share.met and share.by == "0.50x" and share.ours.startswith("0.35x")
    assert not stale.met and stale.by == "2.00x"
    assert not dropped.met and dropped.ours == "3 of 500"
    assert all(t.see for t in (overhead, share, stale, dropped))


def test_a_fast_window_that_left_seqs_unreached_misses_the_staleness_target() -> None:
    stale = targets(_gateway(1000.0, 800.0, 0.0115, _window(0.010, delivered=2_000_000)))[2]
    assert not stale.met
