"""Which clearing instances' loss makes a peer scan `sagas` (nodes/clearing/recovery.py: peers_lost)."""

from __future__ import annotations

from nodes.clearing.recovery import peers_lost, presence_key


def test_a_peer_that_goes_quiet_is_scanned_for_once() -> None:
    lost, handled = peers_lost(seen={"a:1": 0}, alive={}, before={"a:1": 0}, handled=set())
    assert lost == {"a:1"} and handled == {"a:1"}
    lost, handled = peers_lost(seen={"a:1": 0}, alive={}, before={}, handled=handled)
    assert lost == set() and handled == {"a:1"}  # still listed, still quiet: no second scan


def test_a_peer_that_stops_cleanly_is_scanned_for() -> None:
    lost, handled = peers_lost(seen={}, alive={}, before={"a:1": 5}, handled=set())
    assert lost == {"a:1"} and handled == set()


def test_a_peer_that_died_before_it_was_ever_seen_alive_is_scanned_for() -> None:
    lost, _ = peers_lost(seen={"a:1": 0}, alive={}, before={}, handled=set())
    assert lost == {"a:1"}


def test_a_peer_that_came_back_and_died_again_is_scanned_for_again() -> None:
    _, handled = peers_lost(seen={"a:1": 0}, alive={}, before={"a:1": 0}, handled=set())
    lost, handled = peers_lost(seen={"a:1": 9}, alive={"a:1": 9}, before={}, handled=handled)
    assert lost == set() and handled == set()  # alive again
    lost, handled = peers_lost(seen={"a:1": 9}, alive={}, before={"a:1": 9}, handled=handled)
    assert lost == {"a:1"}


def test_live_peers_cause_no_scan() -> None:
    lost, handled = peers_lost(seen={"a:1": 9, "b:2": 9}, alive={"a:1": 9, "b:2": 9}, before={"a:1": 8},
                               handled=set())
    assert lost == set() and handled == set()


def test_an_instance_id_becomes_a_valid_kv_key() -> None:
    assert presence_key("host-1.example:4242") == "host-1_example_4242"
