"""Rich tables for the CLI's replies; money stays the decimal string the node sent."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table

from contracts.codec import Wire
from contracts.dlq import DlqEntry
from contracts.instruments import instrument
from contracts.matching import Fill, Side
from contracts.money import format_amount
from contracts.orders import fill_fees
from contracts.streams import StreamsReply
from tooling.ops import breakers


def _table(title: str, *columns: str, right: tuple[str, ...] = (), fold: tuple[str, ...] = ()) -> Table:
    """Columns keep one line per value, except `fold` ones (free text) when the terminal is narrow."""
    table = Table(title=title, title_justify="left", show_lines=False)
    for column in columns:
        table.add_column(column, justify="right" if column in right else "left",
                         no_wrap=column not in fold, overflow="fold" if column in fold else "ellipsis")
    return table


def balances(reply: dict[str, Any]) -> Table:
    """`{account, balances: {asset: {available, held}}}` as one row per asset."""
    table = _table(f"balances of {reply.get('account', '?')}", "asset", "available", "held",
                   right=("available", "held"))
    for asset, row in sorted(reply.get("balances", {}).items()):
        table.add_row(asset, str(row["available"]), str(row["held"]))
    return table


def changes(reply: dict[str, Any]) -> Table:
    """The balances a mutation touched."""
    table = _table("after", "account", "asset", "available", "held", "version",
                   right=("available", "held", "version"))
    for row in reply.get("changes", []):
        table.add_row(row["account"], row["asset"], str(row["available"]), str(row["held"]),
                      str(row["version"]))
    return table


def timestamp(ts_ns: int) -> str:
    """Nanoseconds since the epoch as UTC ISO-8601 with milliseconds."""
    moment = datetime.fromtimestamp(ts_ns / 1e9, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def events(reply: dict[str, Any], account: str) -> Table:
    """A page of wallet events."""
    table = _table(f"events of {account}", "seq", "version", "type", "asset", "amount", "hold_id",
                   "op_id", "time", right=("seq", "version", "amount"))
    for event in reply.get("events", []):
        table.add_row(str(event["seq"]), str(event["version"]), event["type"], event["asset"],
                      str(event["amount"]), event.get("hold_id") or "", event["op_id"],
                      timestamp(int(event["ts_ns"])))
    return table


def rebuild(reply: dict[str, Any]) -> Table:
    """Whether the replayed projection matched the stored one, and what differed."""
    table = _table("rebuild", "identical", "accounts", "events replayed", "snapshots used", "elapsed ms",
                   "mismatches", right=("accounts", "events replayed", "snapshots used", "elapsed ms",
                                        "mismatches"))
    table.add_row("yes" if reply["identical"] else "no", str(reply["accounts"]),
                  str(reply["events_replayed"]), str(reply["snapshots_used"]),
                  f"{reply['elapsed_us'] / 1000:.3f}", str(len(reply["mismatches"])))
    return table


def mismatches(reply: dict[str, Any]) -> Table:
    """Each projection that differed from the replay (the rebuild repaired it)."""
    table = _table("mismatches", "account", "asset", "what", "stored", "replayed", fold=("what",))
    for row in reply["mismatches"]:
        table.add_row(row["account"], row["asset"], row["what"], str(row["stored"]), str(row["replayed"]))
    return table


def verify(reply: dict[str, Any]) -> Table:
    """The verification outcome and, when it failed, the first bad event."""
    table = _table("verify", "ok", "events checked", "snapshots checked", "first bad",
                   right=("events checked", "snapshots checked"), fold=("first bad",))
    bad = reply.get("first_bad")
    where = ""
    if bad:
        where = (f"seq {bad['seq']} ({bad['event_id']}) {bad['account']}/{bad['asset']} "
                 f"v{bad['version']}: {bad['reason']}")
    table.add_row("yes" if reply["ok"] else "NO", str(reply["events_checked"]),
                  str(reply["snapshots_checked"]), where)
    return table


def services(instances: list[dict[str, Any]]) -> RenderableType:
    """One row per endpoint of every micro instance that answered discovery, then their circuit breakers."""
    table = _table("services", "service", "id", "version", "endpoint", "requests", "errors", "avg ms",
                   "last error", right=("requests", "errors", "avg ms"), fold=("last error",))
    for instance in instances:
        info = instance.get("info") or {}
        stats = instance.get("stats") or {}
        head = stats or info
        endpoints = stats.get("endpoints") or info.get("endpoints") or [{}]
        for endpoint in endpoints:
            has_stats = "num_requests" in endpoint
            avg_ns = endpoint.get("average_processing_time", 0)
            table.add_row(
                str(head.get("name", "?")), str(head.get("id", "?"))[:8], str(head.get("version", "")),
                str(endpoint.get("subject", "")),
                str(endpoint["num_requests"]) if has_stats else "",
                str(endpoint["num_errors"]) if has_stats else "",
                f"{avg_ns / 1e6:.3f}" if has_stats else "",
                str(endpoint.get("last_error") or ""),
            )
    breaker_table = breaker_states(instances)
    return table if breaker_table is None else Group(table, breaker_table)


def breaker_states(instances: list[dict[str, Any]]) -> Table | None:
    """One row per circuit breaker of every instance that reports some; None when none does."""
    table = _table("breakers", "service", "id", "breaker", "state", "failures", "opened",
                   right=("failures", "opened"))
    for instance in instances:
        head = instance.get("stats") or {}
        for name, row in sorted(breakers(instance).items()):
            table.add_row(str(head.get("name", "?")), str(head.get("id", "?"))[:8], name, str(row.get("state", "?")),
                          str(row.get("failures", "")), str(row.get("opened_count", "")))
    return table if table.row_count else None


def _ttl(seconds: float | None) -> str:
    if not seconds:
        return "-"
    whole = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size and whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{seconds:g}s"


def jetstream(view: StreamsReply) -> list[Table]:
    """Streams, their consumers (pending = lag), the KV buckets and the leases held now."""
    streams = _table("streams", "stream", "subjects", "messages", "bytes", "first seq", "last seq",
                     right=("messages", "bytes", "first seq", "last seq"), fold=("subjects",))
    consumers = _table("consumers", "stream", "consumer", "pending", "ack pending", "redelivered",
                       right=("pending", "ack pending", "redelivered"))
    for stream in view.streams:
        streams.add_row(stream.name, ", ".join(stream.subjects), str(stream.messages), str(stream.bytes),
                        str(stream.first_seq), str(stream.last_seq))
        for consumer in stream.consumers:
            consumers.add_row(stream.name, consumer.name, str(consumer.pending), str(consumer.ack_pending),
                              str(consumer.redelivered))
    buckets = _table("kv buckets", "bucket", "values", "history", "ttl", right=("values", "history"))
    for bucket in view.buckets:
        buckets.add_row(bucket.name, str(bucket.values), str(bucket.history), _ttl(bucket.ttl_s))
    leases = _table("leases", "lease", "owner", "host", "pid", "token", right=("pid", "token"))
    for lease in view.leases:
        leases.add_row(lease.key, lease.owner, lease.host, str(lease.pid or "-"), str(lease.token))
    return [streams, consumers, buckets, leases]


def dlq(entries: list[DlqEntry]) -> Table:
    """Parked messages: where each came from, who gave up on it, and why."""
    table = _table("dead letters", "seq", "parked", "stream", "stream seq", "subject", "consumer", "service",
                   "deliveries", "bytes", "last error", right=("seq", "stream seq", "deliveries", "bytes"),
                   fold=("last error",))
    for entry in entries:
        table.add_row(str(entry.seq), entry.time, entry.origin_stream, str(entry.origin_seq), entry.origin_subject,
                      entry.consumer, entry.service, str(entry.deliveries), str(entry.size), entry.last_error)
    return table


def sagas(rows: list[dict[str, Any]], next_cursor: str | None = None) -> Table:
    """One line per saga, newest first; the caption gives the cursor of the next page."""
    table = _table("sagas", "saga", "account", "instrument", "side", "status", "order", "filled", "remaining",
                   "fee", "error", right=("filled", "remaining", "fee"), fold=("error",))
    for row in rows:
        error = row.get("error") or {}
        table.add_row(row["saga_id"], row["account"], row["instrument"], row["side"], row["status"],
                      str(row.get("order_status") or "-"), str(row["filled"]), str(row["remaining"]),
                      f"{row.get('fee', '0')} {row.get('fee_asset', '')}".strip(),
                      f"{error.get('code', '')} {error.get('step', '')}".strip())
    if next_cursor:
        table.caption = f"more: --cursor {next_cursor}"
    return table


def saga(reply: dict[str, Any]) -> RenderableType:
    """A saga's outcome, its order's fills (busts flagged), and (when present) every step and compensation."""
    head = _table(f"saga {reply['saga_id']}", "status", "order", "order status", "filled", "busted", "remaining",
                  "fee", "hold left", "error", right=("filled", "busted", "remaining", "fee", "hold left"),
                  fold=("error",))
    error = reply.get("error") or {}
    head.add_row(reply["status"], reply["order_id"], str(reply.get("order_status") or "-"), str(reply["filled"]),
                 str(reply.get("busted_qty", "0")), str(reply["remaining"]),
                 f"{reply.get('fee', '0')} {reply.get('fee_asset', '')}".strip(),
                 f"{reply['hold_left']} {reply['hold_asset']}",
                 f"{error.get('code', '')}: {error.get('message', '')}" if error else "")
    parts: list[RenderableType] = [head, fills(reply.get("fills", []), set(reply.get("busts", [])))]
    for title in ("steps", "compensations"):
        rows = reply.get(title)
        if rows:
            table = _table(title, "name", "status", "op_id", "started", "ended", "attempts", "result / error",
                           right=("attempts",), fold=("result / error",))
            for step in rows:
                detail = step.get("error") or step.get("result") or ""
                table.add_row(step["name"], step["status"], step["op_id"],
                              timestamp(step["started_ns"]) if step.get("started_ns") else "-",
                              timestamp(step["ended_ns"]) if step.get("ended_ns") else "-",
                              str(step["attempts"]), str(detail))
            parts.append(table)
    return Group(*parts)


def fills(rows: list[dict[str, Any]], busts: set[str] | None = None) -> Table:
    """Trades of an order (ops view: both orders, both accounts and both fees); a busted trade says so."""
    table = _table("fills", "trade", "price", "qty", "maker order", "maker", "maker fee", "taker order", "taker",
                   "taker fee", "busted", right=("price", "qty", "maker fee", "taker fee"))
    for row in rows:
        fill = Fill.model_validate(row, context={"wire": Wire.JSON})
        spec = instrument(fill.instrument)
        _, buyer_fee, seller_fee = fill_fees(spec, fill)
        maker_fee, taker_fee = (seller_fee, buyer_fee) if fill.taker_side is Side.BUY else (buyer_fee, seller_fee)
        table.add_row(row["trade_id"], str(row["price"]), str(row["qty"]), row["maker_order_id"],
                      row["maker_account"], format_amount(spec.quote, maker_fee), row["taker_order_id"],
                      row["taker_account"], format_amount(spec.quote, taker_fee),
                      "busted" if row["trade_id"] in (busts or set()) else "")
    return table


def order(reply: dict[str, Any]) -> RenderableType:
    """The engine's record of an order."""
    table = _table(f"order {reply['order_id']}", "instrument", "account", "side", "status", "price", "qty",
                   "filled", "remaining", right=("price", "qty", "filled", "remaining"))
    table.add_row(reply["instrument"], reply["account"], reply["side"], reply["status"], str(reply.get("price")),
                  str(reply["qty"]), str(reply["filled"]), str(reply["remaining"]))
    return Group(table, fills(reply.get("fills", [])))


def micro(instances: list[dict[str, Any]]) -> Table:
    """One row per micro instance: service, id, version, description and every endpoint's subject."""
    table = _table("micro services", "service", "id", "version", "description", "endpoints", fold=("endpoints",))
    for instance in instances:
        info = instance.get("info") or instance.get("stats") or {}
        subjects = [str(e.get("subject", "")) for e in info.get("endpoints") or []]
        table.add_row(str(info.get("name", "?")), str(info.get("id", "?")), str(info.get("version", "")),
                      str(info.get("description") or ""), " ".join(subjects))
    return table
