"""`qt bench gateway`: what limits the gateway, in words, from one run's own numbers (the block's `why`)."""

from __future__ import annotations

from tooling.bench.gateway_fanout import Window
from tooling.bench.gateway_tables import (
    OVERHEAD_CLIENTS,
    OVERHEAD_TARGET_S,
    PROCESSES,
    Results,
    judged_overhead,
    judged_share,
    overhead,
    targets,
)
from tooling.bench.stats import fmt_ms, fmt_rate, ratio


def why(res: Results) -> str | None:
    """One paragraph per run on where the gateway's time goes, from this run's own numbers."""
    parts = [_overhead_reason(res), _fanout_reason(res)]
    parts = [p for p in parts if p]
    if not parts:
        return None
    missed = [t for t in targets(res) if not t.met]
    return "> " + ("**Why missed:** " if missed else "**Where the time goes:** ") + "; ".join(parts) + "."


def _delta(res: Results, n: int, name: str) -> float:
    """HTTP minus raw NATS CPU µs per saga of one process at `n` clients."""
    return res.points[f"http {n}"].cpu_us.get(name, 0.0) - res.points[f"nats {n}"].cpu_us.get(name, 0.0)


def _overhead_reason(res: Results) -> str | None:
    counts = res.clients()
    if not counts:
        return None
    low, high = min(counts), max(counts)
    gw, loop = res.points[f"http {low}"].cpu_us.get("gateway", 0.0), res.gateway_loop_us.get(f"http {low}", 0.0)
    # the overhead target is judged at 1 client (paired when measured so); another lowest count is only shown
    judged = judged_overhead(res) if low == OVERHEAD_CLIENTS else None
    added = judged[0] if judged is not None else overhead(res, low)
    text = (f"with {low} client{'s' if low > 1 else ''} the gateway adds {fmt_ms(added)} at p50; with "
            f"one order in flight the added CPU is time on its path: the gateway {gw:,.0f} µs per order "
            f"({loop:,.0f} of it on its event loop: HTTP parsing, JWT, validation, JSON, the NATS requests), "
            f"the bench's HTTP client {_delta(res, low, 'client'):+,.0f} µs against nats-py, clearing "
            f"{_delta(res, low, 'clearing'):+,.0f} µs and nats-server "
            f"{_delta(res, low, 'nats-server'):+,.0f} µs, plus the idempotency record's read in series")
    kv = res.kv.p50()
    if kv is not None:
        text += f" ({fmt_ms(kv)} at p50 alone; its one fsynced write follows the response)"
    reads = {(r.label, r.server): r for r in res.reads if r.run.ok}
    peer, health = reads.get(("GET /health", "bare FastAPI peer")), reads.get(("GET /health", "gateway"))
    book = reads.get(("GET /v1/markets/AAPL/book?depth=10", "gateway"))
    if peer is not None and health is not None:
        text += (f"; the HTTP stack alone costs {peer.cpu_us():,.0f} µs of server CPU per request on this machine "
                 f"(a bare FastAPI `/health` on the same uvicorn) and the gateway's `/health` {health.cpu_us():,.0f}")
        if book is not None:
            extra = book.cpu_us() - health.cpu_us()
            text += (f", a GET with one NATS request behind it {book.cpu_us():,.0f} (+{extra:,.0f} for the request "
                     "through nats-py), and an order makes three (idempotency record read, "
                     "`clearing.place_order`, then after the response the record create) plus a token check and "
                     "validation")
        if judged is not None:
            text += f" (the overhead judged, {judged[3]}, is {ratio(judged[0], OVERHEAD_TARGET_S)} the 2 ms target)"
    if high != low:
        share, _, _, how = judged_share(res)
        hp, hn = res.points[f"http {high}"], res.points[f"nats {high}"]
        total_h = sum(hp.cpu_us.get(n, 0.0) for n in PROCESSES)
        total_n = sum(hn.cpu_us.get(n, 0.0) for n in PROCESSES)
        text += (f"; with {high} clients our processes use {sum(hp.cores.values()):.2f} cores (others "
                 f"{hp.others:.2f}) and an order through the gateway costs {total_h:,.0f} µs of CPU in all against "
                 f"{total_n:,.0f} over raw NATS ({ratio(total_h, total_n)}: gateway "
                 f"{hp.cpu_us.get('gateway', 0.0):,.0f}, bench client {_delta(res, high, 'client'):+,.0f}, clearing "
                 f"{_delta(res, high, 'clearing'):+,.0f}, nats-server {_delta(res, high, 'nats-server'):+,.0f}), so "
                 f"sagas/s fall to {ratio(share, 1.0)} ({how}) and, in a "
                 f"closed loop, p50 grows by {fmt_ms(overhead(res, high))}")
    return text


def _frame_us(w: Window) -> float:
    """Gateway CPU per frame it delivered in a window (µs)."""
    return w.usage.cores.get("gateway", 0.0) * w.usage.seconds / max(w.frames, 1) * 1e6


def _fanout_reason(res: Results) -> str | None:
    w = res.judged()
    if w is None:
        return None
    calm = [x for x in res.windows if x.source == "synthetic" and not x.closed and x.delivered and x.drained]
    base = min(calm, key=lambda x: x.offered) if calm else w
    per = _frame_us(base)
    best = min((_frame_us(x) for x in calm), default=per)
    n = res.subscribers
    text = (f"fan-out costs the gateway {per:,.0f} µs of CPU per frame at {fmt_rate(base.offered)} updates "
            f"({base.frames:,} frames: per connection its sender's wake-up, the ASGI send chain and one socket "
            "write; the frame itself is encoded once per update), so one update to "
            f"{n} subscribers occupies its single event loop for "
            f"{fmt_ms(per * n / 1e6)}: the last subscriber's frame leaves that long after the first even when "
            f"updates trickle in (p99 {fmt_ms(base.delay(0.99))} at {fmt_rate(base.offered)}); at its cheapest "
            f"({best:,.0f} µs per frame, when frames queue up) one process tops out near "
            f"{fmt_rate(1e6 / best if best else None, ' frames/s')}, i.e. {fmt_rate(1e6 / best / n if best else None)} "
            f"updates to {n} subscribers")
    text += (f"; at {fmt_rate(w.offered)} updates ({fmt_rate(w.feed_rate * w.subscribers, ' frames/s')} asked) it used "
             f"{w.usage.cores.get('gateway', 0.0):.2f} cores, sent {w.updates:,} update and {w.snapshots:,} snapshot "
             f"frames and brought {w.delivered:,} of {w.expected:,} (subscriber, seq) pairs up to date "
             f"(the {res.ws_procs} subscriber processes used {w.usage.cores.get('subscribers', 0.0):.2f} cores "
             "together)")
    if w.closed:
        within = max(at for _c, at, _code, _reason in w.closed) - min(at for _c, at, _code, _reason in w.closed)
        text += (f", closing {len(w.closed)} connections as slow consumers once their 1,000-frame queues were full "
                 f"(all within {within:.1f} s; p99 {fmt_ms(w.delay(0.99))} over the frames that did arrive)")
    engine = next((x for x in res.windows if x.source == "engine"), None)
    if engine is not None:
        per_command = engine.usage.cores.get("matching", 0.0) * engine.usage.seconds / max(engine.commands, 1) * 1e6
        text += (f"; the engine itself published {fmt_rate(engine.feed_rate)} `md.book` messages from "
                 f"{fmt_rate(engine.command_rate)} commands ({per_command:,.0f} µs of matching CPU per command; one "
                 "message carries every level changed since its last publish cycle), with a delay p99 of "
                 f"{fmt_ms(engine.delay(0.99))} at that rate")
    return text
