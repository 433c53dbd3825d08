"""Results -> report sections and targets: ours, the peer, the ratio, the target and whether it was met."""

from __future__ import annotations

from collections.abc import Callable

from tooling.bench.rebuild import RebuildResults
from tooling.bench.report import Section, Target, at_least, at_most
from tooling.bench.stats import Run, fmt_ms, fmt_rate, fmt_s, ratio, status
from tooling.bench.wallet import ACCOUNTS, NatsPlan, NatsResults

DEPOSITS_TARGET = 10_000.0
DEPOSITS_CLIENTS = 64
"""The client count the deposits target is judged at."""
STORE_TARGET = 100_000.0
P99_TARGET_S = 0.005
OPEN_RATE_TARGET = 1000.0
REBUILD_TARGET_S = 5.0


def nats_sections(plan: NatsPlan, res: NatsResults) -> tuple[list[Section], list[Target]]:
    """Closed-loop deposits and the open-loop latency run, each against the echo peer."""
    closed = Section(
        "Durable deposits over NATS, closed loop (clients send one request at a time)",
        ["server", "clients", "req/s", "p50", "p99", "p99.9", "errors", "ours/echo (req/s)",
         "node CPU/req (loop + other threads)", "CPU cores node/server/client/others", "relay caught up", "target"])
    targets: list[Target] = []
    see = ("the `Profile of the wallet process` tables (section `profile`)" if plan.profile_s > 0 else
           "`qt bench wallet --only nats,profile --profile-duration 6` for a profile of the wallet process")
    for key in (*plan.syncs, "echo"):
        for clients in plan.clients:
            run = res.closed.get((key, clients))
            if run is None:
                continue
            peer = res.closed.get(("echo", clients))
            lag = res.relay_lag_s.get((key, clients))
            cpu = res.cpu.get((key, clients), {})
            cores = " / ".join(f"{cpu[n]:.2f}" for n in ("node", "nats-server", "client", "others") if n in cpu)
            target = ""
            if key == "FULL" and clients == DEPOSITS_CLIENTS:
                t = at_least(f"durable deposits/s over NATS, {clients} clients (FULL)", DEPOSITS_TARGET, run.rate,
                             f"{fmt_rate(run.rate)} ({_peer_text(run.rate, peer.rate if peer else None, 'req/s')})",
                             ok=run.errors == 0, see=see)
                target = f">= {DEPOSITS_TARGET:,.0f}/s: {status(t.met)} ({t.by})"
                targets.append(t)
            closed.add(_server(key), str(clients), fmt_rate(run.rate), fmt_ms(run.p50), fmt_ms(run.p99),
                       fmt_ms(run.p999), str(run.errors),
                       "peer" if key == "echo" else ratio(run.rate, peer.rate if peer else None),
                       _cpu(res.cpu_per_request_us.get((key, clients))), cores or "-", _lag(key, lag), target)
    closed.notes += _ceiling(res, plan)
    closed.notes.append("node CPU/req: CPU time of the node process divided by the requests it answered "
                        "(warm-up included), split into its main thread (asyncio loop: NATS, decoding, "
                        "validation, tracing, the wallet's SQLite group commits, replies, the outbox "
                        "relay's publishing) and its other threads (the wallet's reads, the jobs it runs "
                        "aside and its WAL checkpoints). All need the GIL, so their sum bounds one process: "
                        "1 s / (CPU per request) is its ceiling in requests/s.")
    closed.notes.append("CPU cores: CPU seconds / wall seconds of each process over the run (warm-up "
                        "included), of 2; `others` is the rest of the machine (/proc/stat) in the same "
                        "interval: anything well above 0 means other work competed with this run.")
    closed.notes.append("`relay caught up`: seconds after the run until the outbox relay had published "
                        "every committed event to the WALLET stream (the next run waits for it).")
    opened = Section(
        "Open loop at fixed offered rates (latency from the scheduled send time)",
        ["server", "offered", "achieved", "p50", "p99", "p99.9", "errors", "p99 ours/echo", "others (cores)",
         "target"])
    for rate in plan.open_rates:
        peer = res.open.get(("echo", rate))
        for key in (*plan.syncs, "echo"):
            run = res.open.get((key, rate))
            if run is None:
                continue
            target = ""
            if key == "FULL" and rate == OPEN_RATE_TARGET:
                shown = (f"{fmt_ms(run.p99)} (achieved {fmt_rate(run.rate)}, {run.errors} errors; "
                         f"{_peer_text(run.p99, peer.p99 if peer else None, 'p99', fmt_ms)})")
                t = at_most(f"p99 at {rate:,.0f} deposits/s offered, open loop (FULL)", P99_TARGET_S, run.p99,
                            shown, wanted="< 5 ms", ok=run.errors == 0, see=see)
                target = f"p99 < 5 ms: {status(t.met)} ({t.by})"
                targets.append(t)
            opened.add(_server(key), fmt_rate(rate), fmt_rate(run.rate), fmt_ms(run.p50),
                       fmt_ms(run.p99), fmt_ms(run.p999), str(run.errors),
                       "peer" if key == "echo" else ratio(run.p99, peer.p99 if peer else None),
                       f"{res.open_others.get((key, rate), 0.0):.2f}", target)
    opened.notes.append("A sender schedules request k at t0 + k/rate and does not wait for replies; a "
                        "server slower than the offered rate shows up as growing latency, not a lower rate.")
    names = {t.name.split(",")[0] for t in targets}
    if "durable deposits/s over NATS" not in names:
        targets.insert(0, Target(f"durable deposits/s over NATS, {DEPOSITS_CLIENTS} clients (FULL)",
                                 f">= {DEPOSITS_TARGET:,.0f}/s", f"not measured ({DEPOSITS_CLIENTS} not in --clients "
                                 "or FULL not run)", False))
    if not any(t.name.startswith("p99 at") for t in targets):
        targets.append(Target(f"p99 at {OPEN_RATE_TARGET:,.0f} deposits/s offered, open loop (FULL)", "< 5 ms",
                              f"not measured ({OPEN_RATE_TARGET:,.0f} not in --open-rates)", False))
    return [closed, opened], targets


def _peer_text(ours: float | None, peer: float | None, what: str,
               fmt: Callable[[float | None], str] = fmt_rate) -> str:
    """`echo peer 13,000/s in this run: 0.12x` (the peer measured in the same run), or why there is none."""
    if peer is None:
        return "echo peer not measured in this run"
    return f"echo peer {what} {fmt(peer)} in this run: ours {ratio(ours, peer)}"


def _ceiling(res: NatsResults, plan: NatsPlan) -> list[str]:
    """One sentence per server: CPU per request at the highest concurrency and the ceiling it implies."""
    top = max(plan.clients)
    out = []
    for key in (*plan.syncs, "echo"):
        cpu = res.cpu_per_request_us.get((key, top))
        if cpu:
            out.append(f"{_server(key)} at {top} clients: {cpu[0]:,.0f} µs of node CPU per request "
                       f"({cpu[1]:,.0f} on the event loop thread) -> at most {1e6 / cpu[0]:,.0f} req/s "
                       "for one process holding one core's worth of GIL.")
    return out


def _cpu(value: tuple[float, float] | None) -> str:
    if value is None:
        return "-"
    total, loop = value
    return f"{total:,.0f} µs ({loop:,.0f} + {total - loop:,.0f})"


def _lag(key: str, lag: float | None) -> str:
    if key == "echo":
        return "-"
    return f"{lag:.1f} s" if lag is not None else "timeout"


def _server(key: str) -> str:
    return "echo peer" if key == "echo" else f"wallet {key}"


def store_sections(ours: dict[tuple[int, str], Run], peers: dict[str, Run]) -> tuple[list[Section], list[Target]]:
    """EventStore appends by batch size and sync mode, against bare sqlite3 with the same shape."""
    section = Section(
        "Raw event store: EventStore.execute_batch in-process (deposits, 1,000 accounts)",
        ["batch", "sync", "events/s", "peer", "peer rows/s", "ours/peer", "earlier target"])
    targets: list[Target] = []
    for (batch, sync), run in sorted(ours.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        peer_name = f"sqlite3 {batch}-row txn {sync}"
        peer = peers.get(peer_name)
        target = ""
        if batch == max(b for b, _ in ours):
            target = f">= {STORE_TARGET:,.0f}/s: {status(run.rate >= STORE_TARGET)}"
        section.add(str(batch), sync, fmt_rate(run.rate), peer_name, fmt_rate(peer.rate if peer else None),
                    ratio(run.rate, peer.rate if peer else None), target)
        aio = peers.get(f"aiosqlite 1-row txn {sync}")
        if batch == 1 and aio is not None:
            section.add(str(batch), sync, fmt_rate(run.rate), aio.label, fmt_rate(aio.rate),
                        ratio(run.rate, aio.rate), "")
    best = max(ours.items(), key=lambda kv: kv[1].rate, default=None)
    if best is not None:
        (batch, sync), run = best
        peer = peers.get(f"sqlite3 {batch}-row txn {sync}")
        section.notes.append(
            f"Best: batch {batch} {sync} at {1e6 / run.rate:,.0f} µs per event"
            + (f", against {1e6 / peer.rate:,.1f} µs per row for bare sqlite3 in the same shape" if peer else "")
            + f"; {STORE_TARGET:,.0f} events/s needs {1e6 / STORE_TARGET:,.0f} µs per event.")
    section.notes += [
        "One event = one deposit through the store's whole path: op_id lookup and recorded reply, "
        "hash-chained event row, a snapshot every 500 events per key, one projection upsert per key per batch.",
        "Peers: a 3-column table, BEGIN + N single-row INSERTs + COMMIT through one sqlite3 cursor "
        "(WAL, the same synchronous); aiosqlite does execute + commit per row (two thread hops).",
    ]
    peer_table = Section("Peers alone (issue reference on this machine in the last column)",
                         ["peer", "rows/s", "issue reference"])
    references = {"sqlite3 1-row txn NORMAL": "33,000/s", "sqlite3 100-row txn NORMAL": "258,000/s",
                  "aiosqlite 1-row txn NORMAL": "6,500/s"}
    for label, run in peers.items():
        peer_table.add(label, fmt_rate(run.rate), references.get(label, "-"))
    return [section, peer_table], targets


def rebuild_section(r: RebuildResults) -> tuple[Section, list[Target]]:
    """Build, scan, replay and rebuild timings of the million-event account."""
    s = Section(f"Rebuild one account with {r.events:,} events (snapshot every {r.snapshot_every})",
                ["step", "events", "time", "events/s", "vs scan", "earlier target"])
    targets: list[Target] = []  # earlier issues' targets: judged in the table, not in issue 10's summary
    met_full = r.replay_full_s < REBUILD_TARGET_S
    met_snap = r.rebuild_s < REBUILD_TARGET_S
    s.add("build: EventStore.execute_batch, settlements of 64 credit legs, 160 per txn, NORMAL",
          f"{r.events:,}", fmt_s(r.build_s), fmt_rate(r.events / r.build_s if r.build_s else None), "-", "")
    s.add("peer: SELECT the same rows, no fold", f"{r.events:,}", fmt_s(r.scan_s),
          fmt_rate(r.events / r.scan_s if r.scan_s else None), "1.00x", "")
    s.add("replay(db, key, use_snapshot=False)", f"{r.replay_full_events:,}", fmt_s(r.replay_full_s),
          fmt_rate(r.replay_full_events / r.replay_full_s if r.replay_full_s else None),
          ratio(r.replay_full_s, r.scan_s), f"< 5 s: {status(met_full)}")
    s.add("replay(db, key, use_snapshot=True)", f"{r.replay_snap_events:,}", fmt_s(r.replay_snap_s), "-",
          "-", "")
    s.add("rebuild(db, account) (snapshots)", f"{r.replay_snap_events:,}", fmt_s(r.rebuild_s), "-", "-",
          f"< 5 s: {status(met_snap)}")
    s.add("rebuild(db, account, use_snapshots=False)", f"{r.events:,}", fmt_s(r.rebuild_full_s),
          fmt_rate(r.events / r.rebuild_full_s if r.rebuild_full_s else None),
          ratio(r.rebuild_full_s, r.scan_s), "")
    s.notes.append(f"Database {r.db_bytes / 1e6:,.0f} MB (events, outbox, ops, snapshots); warm OS page "
                   f"cache, fresh SQLite connection per step. Rebuild identical: {r.identical}; replayed "
                   f"balance = {r.events:,} units: {r.balance_ok}.")
    s.notes.append(f"With snapshots, replay starts at the latest one (version "
                   f"{r.events - r.events % r.snapshot_every:,}) and folds the {r.replay_snap_events:,} events "
                   f"after it (never more than {r.snapshot_every - 1:,}); rebuild(db, account) also lists the "
                   "account's (account, asset) keys and compares the stored projection.")
    s.notes += r.notes
    return s, targets


def jetstream_section(runs: dict[tuple[str, str], Run]) -> Section:
    """Publish acks/s with `sync_interval: always` against `2m`."""
    s = Section("JetStream publish acks: `sync_interval: always` (nats.conf) vs default `2m`",
                ["publish shape", "always acks/s", "2m acks/s", "always/2m", "always p50", "always p99",
                 "2m p50", "2m p99"])
    for shape in ("sequential", "pipelined"):
        a, b = runs.get(("always", shape)), runs.get(("2m", shape))
        if a is None or b is None:
            continue
        s.add(a.label, fmt_rate(a.rate), fmt_rate(b.rate), ratio(a.rate, b.rate), fmt_ms(a.p50),
              fmt_ms(a.p99), fmt_ms(b.p50), fmt_ms(b.p99))
    s.notes.append("File-storage stream, one subject, 320-byte payloads with a Nats-Msg-Id (dedup on), "
                   "one client connection; a fresh server per policy.")
    return s


def partitions_section(plan: NatsPlan, results: NatsResults) -> Section:
    """Deposits/s and latency at the most clients: one wallet partition beside `plan.partitions`, same run."""
    clients = max(plan.clients)
    s = Section(f"Wallet partitions: durable deposits over NATS, {clients} clients (FULL)",
                ["partitions", "deposits/s", "vs 1 partition", "p50", "p99", "errors", "wallet cores",
                 "nats-server cores", "client cores"])
    one = results.partitioned.get(1)
    for count, run in sorted(results.partitioned.items()):
        cores = results.partitioned_cpu.get(count, {})
        s.add(str(count), fmt_rate(run.rate), ratio(run.rate, one.rate if one else None), fmt_ms(run.p50),
              fmt_ms(run.p99), str(run.errors), *(f"{cores[k]:.2f}" if k in cores else "-"
                                                  for k in ("wallets", "nats-server", "client")))
    s.notes.append(f"One fresh nats-server per row; each partition is a `python -m nodes.wallet` process with its "
                   f"own SQLite file (QT_WALLET_PARTITION/QT_WALLET_PARTITIONS), and each deposit goes to its "
                   f"account's partition (`wallet_partition`: FNV-1a mod P) over the same {ACCOUNTS:,} accounts. "
                   f"{plan.warmup_s:g} s warm-up, {plan.duration_s:g} s measured. Every process shares the "
                   "machine's cores: more partitions add writers, not cores.")
    return s
