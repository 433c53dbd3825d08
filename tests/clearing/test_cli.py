"""`qt order place|cancel|show` and `qt saga ls|show` against a running platform, as an operator runs them."""

from __future__ import annotations

import asyncio
import os
import subprocess

from tests.clearing.platform import Platform, clearing, fund, place
from tests.clearing.test_place_order import acct
from tests.tooling.harness import QT


async def qt(platform: Platform, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `qt --nats-url ... --data-dir ... <args>` in a thread (the test loop keeps serving)."""
    argv = [QT, "--nats-url", platform.server.url, "--data-dir", str(platform.server.data_dir), *args]
    env = {**os.environ, "COLUMNS": "300"}
    return await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=60, env=env)


async def test_an_operator_places_inspects_and_cancels_an_order(shared: Platform) -> None:
    trader = acct("cli")
    await fund(shared.nc, trader, USD=1_000_000)
    placed = await qt(shared, "order", "place", trader, "AAPL", "BUY", "1.5", "--price", "99.99",
                      "--saga-id", f"cli-{trader}")
    assert placed.returncode == 0, placed.stderr
    assert "completed" in placed.stdout and f"cli-{trader}" in placed.stdout

    shown = await qt(shared, "saga", "show", f"cli-{trader}")
    assert shown.returncode == 0, shown.stderr
    for step in ("reserve_funds", "submit_order", "process_fills", "settle"):
        assert step in shown.stdout
    assert f"cli-{trader}:reserve_funds" in shown.stdout  # the op_id each step carried

    listed = await qt(shared, "saga", "ls", "--account", trader)
    assert listed.returncode == 0 and f"cli-{trader}" in listed.stdout

    order = await qt(shared, "order", "show", f"cli-{trader}")
    assert order.returncode == 0 and "new" in order.stdout and "1.5000" in order.stdout

    cancelled = await qt(shared, "order", "cancel", trader, f"cli-{trader}")
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout


async def test_bad_cli_input_is_refused_with_the_contract_code(shared: Platform) -> None:
    bad_side = await qt(shared, "order", "place", "alice", "AAPL", "HOLD", "1", "--price", "10.00")
    assert bad_side.returncode == 1 and "validation_error" in bad_side.stderr
    negative = await qt(shared, "order", "place", "alice", "AAPL", "BUY", "-1", "--price", "10.00")
    assert negative.returncode == 1 and "invalid_amount" in negative.stderr
    missing = await qt(shared, "saga", "show", "no-such-saga")
    assert missing.returncode == 1 and "not_found" in missing.stderr
    status = await qt(shared, "saga", "ls", "--status", "bogus")
    assert status.returncode == 1 and "validation_error" in status.stderr


def _line(text: str, *words: str) -> str:
    """The one output line that holds every word."""
    [line] = [row for row in text.splitlines() if all(w in row for w in words)]
    return line


async def test_order_show_flags_a_busted_fill_and_saga_ls_pages(shared: Platform) -> None:
    maker, taker = acct("climaker"), acct("clitaker")
    await fund(shared.nc, maker, NVDA=20_000)
    await fund(shared.nc, taker, USD=1_000_000)
    sell = await place(shared.nc, account=maker, instrument="NVDA", side="SELL", price="825.50", qty="2.0000")
    try:
        bust = await place(shared.nc, account=taker, instrument="NVDA", side="BUY", price="825.50", qty="1.0000",
                           inject_failure_step="after:process_fills")
        [trade_id] = bust["busts"]
        shown = await qt(shared, "order", "show", bust["order_id"])
        assert shown.returncode == 0, shown.stderr
        assert "busted" in _line(shown.stdout, "compensated", bust["order_id"])  # the order's status
        assert "busted" in _line(shown.stdout, f"{trade_id} ")  # its one fill
        maker_view = await qt(shared, "order", "show", sell["order_id"])
        assert "busted" in _line(maker_view.stdout, f"{trade_id} ", maker, taker)  # ops see both sides
    finally:
        await clearing(shared.nc, "cancel_order", account=maker, order_id=sell["order_id"])

    newer = await place(shared.nc, account=maker, instrument="NVDA", side="SELL", price="900.00", qty="0.5000")
    try:
        first = await qt(shared, "saga", "ls", "--account", maker, "-n", "1")
        assert newer["saga_id"] in first.stdout and sell["saga_id"] not in first.stdout
        cursor = first.stdout.split("--cursor", 1)[1].split()[0]
        second = await qt(shared, "saga", "ls", "--account", maker, "-n", "1", "--cursor", cursor)
        assert sell["saga_id"] in second.stdout and "--cursor" not in second.stdout
    finally:
        await clearing(shared.nc, "cancel_order", account=maker, order_id=newer["order_id"])
