"""`qt book <instrument>`: the L2 ladder of one instrument, asks above bids, as the engine holds it."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from contracts.instruments import instrument
from contracts.matching import BookQuery
from contracts.money import format_amount, parse_amount
from contracts.subjects import MatchingEndpoint, matching_subject
from tooling.ops import DataDirOption, NatsUrlOption, out, request, run, target, validate


def ladder(book: dict[str, Any]) -> Table:
    """Asks (red, best at the bottom) over bids (green, best on top), with the spread between."""
    table = Table(title=f"{book['instrument']}  seq {book['seq']}  checksum {book['checksum']}",
                  show_edge=False, header_style="bold")
    table.add_column("bid qty", justify="right", style="green")
    table.add_column("price", justify="right")
    table.add_column("ask qty", justify="right", style="red")
    for price, qty in reversed(book["asks"]):
        table.add_row("", f"[red]{price}[/red]", qty)
    if book["asks"] and book["bids"]:
        table.add_row("", f"[dim]spread {_spread(book)}[/dim]", "")
    for price, qty in book["bids"]:
        table.add_row(qty, f"[green]{price}[/green]", "")
    return table


def _spread(book: dict[str, Any]) -> str:
    quote = instrument(book["instrument"]).quote
    ask, bid = (parse_amount(quote, side[0][0]) for side in (book["asks"], book["bids"]))
    return format_amount(quote, ask - bid)


def book(
    ctx: typer.Context,
    instrument: Annotated[str, typer.Argument(help="e.g. AAPL, BTC-USD")],
    depth: Annotated[int, typer.Option("--depth", "-n", help="Levels per side.")] = 10,
    nats_url: NatsUrlOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Print the order book ladder of an instrument (L2, best prices nearest the spread)."""
    query = validate(BookQuery, {"instrument": instrument, "depth": depth})
    reply = run(target(ctx, nats_url, data_dir),
                lambda nc: request(nc, matching_subject(query.instrument, MatchingEndpoint.BOOK), query))
    out.print(ladder(reply))
