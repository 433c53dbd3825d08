"""`qt smoke`: the end-to-end checks against a running platform, over the public HTTP and WebSocket API.

Each run uses fresh accounts (`smoke-<run>-...`), so it passes any number of times against the same
platform; it mints its own tokens with the gateway's key under the data dir.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import websockets
from rich.console import Console

from contracts.gateway import JWT_AUDIENCE, JWT_ISSUER, Role
from contracts.subjects import WALLET_SERVICE
from gateway.keys import key_paths, load_private
from gateway.tokens import mint

SYMBOL = "AAPL"
PRICE = "187.42"  # the seeded book's reference: inside its spread, so smoke's orders meet each other
OPS = "smoke-ops"  # the operator account smoke's deposits, fault drill and ops views run as


@dataclass
class Smoke:
    """One run: the gateway's URL, the signing key, this run's accounts and what the steps found."""

    base_url: str
    data_dir: Path
    console: Console
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    results: list[tuple[str, bool, str]] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def account(self, name: str) -> str:
        """An account of this run only."""
        return f"smoke-{self.run_id}-{name}"

    def token(self, account: str, role: Role = Role.TRADER) -> str:
        """A valid token minted with the gateway's own key."""
        return mint(load_private(key_paths(self.data_dir)[0]), account=account, role=role, ttl_s=900,
                    issuer=os.environ.get("QT_JWT_ISSUER", JWT_ISSUER),
                    audience=os.environ.get("QT_JWT_AUDIENCE", JWT_AUDIENCE))

    def headers(self, account: str, role: Role = Role.TRADER, key: str | None = None) -> dict[str, str]:
        """Authorization (and an Idempotency-Key for mutations)."""
        out = {"Authorization": f"Bearer {self.token(account, role)}"}
        if key is not None:
            out["Idempotency-Key"] = key
        return out

    async def step(self, name: str, check: Callable[[], Awaitable[str]]) -> None:
        """Run one check, print a tick or a cross with what it saw."""
        try:
            detail = await check()
            self.results.append((name, True, detail))
            self.console.print(f"[green]✓[/green] {name} [dim]{detail}[/dim]")
        except Exception as exc:  # a failed check is reported, the next still runs
            self.results.append((name, False, f"{type(exc).__name__}: {exc}"))
            self.console.print(f"[red]✗[/red] {name} [red]{type(exc).__name__}: {exc}[/red]")


def expect(condition: bool, what: str) -> None:
    """Fail the step with `what` unless `condition`."""
    if not condition:
        raise AssertionError(what)


async def run_smoke(base_url: str, data_dir: Path, console: Console) -> bool:
    """Every check, in order; True when all passed."""
    s = Smoke(base_url, data_dir, console)
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        steps = Steps(s, http)
        for name, check in steps.all():
            await s.step(name, check)
    failed = [name for name, ok, _ in s.results if not ok]
    console.print(f"smoke: {len(s.results) - len(failed)}/{len(s.results)} passed"
                  + (f"; failed: {', '.join(failed)}" if failed else ""))
    return not failed


class Steps:
    """The checks; each returns a one-line detail or raises."""

    def __init__(self, s: Smoke, http: httpx.AsyncClient) -> None:
        self.s = s
        self.http = http
        self.buyer = s.account("buyer")
        self.seller = s.account("seller")

    def all(self) -> list[tuple[str, Callable[[], Awaitable[str]]]]:
        """(name, check) in the order they run."""
        return [
            ("services healthy", self.healthy),
            ("JWT required: no token -> 401", self.no_token),
            ("JWT: bad signature -> 401", self.bad_signature),
            ("JWT: wrong algorithm (HS256) -> 401", self.wrong_algorithm),
            ("50 x 1.00 deposits by ops -> 10,050.00; a trader's -> 403", self.deposits),
            ("rebuild identical, balance unchanged", self.rebuild),
            ("two concurrent over-holds: exactly one succeeds", self.over_holds),
            ("crossing order filled, balances exact", self.crossing),
            ("idempotent replay returns the same saga", self.replay),
            ("same key, different payload -> 422", self.key_conflict),
            ("IOC BUY against two resting SELLs fills the first maker only", self.time_priority),
            ("inject_failure_step: trader 403; ops -> compensated, hold released, order cancelled", self.injected),
            ("market data: the trade in tape and candle", self.market_data),
            ("WebSocket book: snapshot, checksum, equals GET book", self.ws_book),
            ("DLQ and breakers visible", self.ops_views),
            ("metrics exposed", self.metrics),
        ]

    async def healthy(self) -> str:
        ready = await self.http.get("/ready")
        expect(ready.status_code == 200, f"/ready answered {ready.status_code}: {ready.text[:200]}")
        services = await self.http.get("/v1/services", headers=self.s.headers(OPS, Role.OPS))
        expect(services.status_code == 200, f"/v1/services answered {services.status_code}")
        names = {row.get("name") for row in services.json().get("services", [])}
        missing = {"wallet", "matching", "clearing", "marketdata"} - names
        expect(not missing, f"not answering: {sorted(missing)}")
        return f"{len(names)} services answering"

    async def no_token(self) -> str:
        reply = await self.http.get(f"/v1/accounts/{self.buyer}/balances")
        expect(reply.status_code == 401, f"got {reply.status_code}")
        return f"401 {reply.json().get('code', '')}"

    async def bad_signature(self) -> str:
        token = self.s.token(self.buyer)
        head, body, sig = token.split(".")
        forged = f"{head}.{body}.{sig[:-4]}{'AAAA' if not sig.endswith('AAAA') else 'BBBB'}"
        reply = await self.http.get(f"/v1/accounts/{self.buyer}/balances",
                                    headers={"Authorization": f"Bearer {forged}"})
        expect(reply.status_code == 401, f"got {reply.status_code}")
        return f"401 {reply.json().get('code', '')}"

    async def wrong_algorithm(self) -> str:
        public = key_paths(self.s.data_dir)[1].read_bytes()  # the classic confusion: HMAC keyed with the public key
        claims = {"sub": self.buyer, "role": "trader", "iss": JWT_ISSUER, "aud": JWT_AUDIENCE,
                  "iat": int(time.time()), "exp": int(time.time()) + 300}
        token = _hs256(claims, public)
        reply = await self.http.get(f"/v1/accounts/{self.buyer}/balances",
                                    headers={"Authorization": f"Bearer {token}"})
        expect(reply.status_code == 401, f"got {reply.status_code}")
        return f"401 {reply.json().get('code', '')}"

    async def deposits(self) -> str:
        own = await self.http.post(f"/v1/accounts/{self.buyer}/deposits", json={"asset": "USD", "amount": "1.00"},
                                   headers=self.s.headers(self.buyer, key=secrets.token_hex(8)))
        expect(own.status_code == 403, f"a trader's own deposit answered {own.status_code}")
        first = await self._deposit(self.buyer, "USD", "10000.00")
        expect(first.status_code in (200, 201), f"deposit answered {first.status_code}: {first.text[:200]}")
        replies = await asyncio.gather(*(self._deposit(self.buyer, "USD", "1.00") for _ in range(50)))
        bad = [r.status_code for r in replies if r.status_code not in (200, 201)]
        expect(not bad, f"deposits refused: {bad[:5]}")
        usd = await self._balance(self.buyer, "USD")
        expect(usd == ("10050.00", "0.00"), f"balance {usd}")
        return "USD available 10050.00"

    async def rebuild(self) -> str:
        reply = await self.http.post(f"/v1/accounts/{self.buyer}/rebuild", json={},
                                     headers=self.s.headers(OPS, Role.OPS, key=secrets.token_hex(8)))
        expect(reply.status_code == 200, f"rebuild answered {reply.status_code}: {reply.text[:200]}")
        expect(reply.json()["identical"] is True, "rebuild found drift")
        usd = await self._balance(self.buyer, "USD")
        expect(usd == ("10050.00", "0.00"), f"balance after rebuild {usd}")
        return f"identical, {reply.json()['events_replayed']} events replayed"

    async def over_holds(self) -> str:
        # each needs 6,002.99 USD (6,000 + fee) of the 10,050.00: both cannot be held
        body = {"instrument": SYMBOL, "side": "BUY", "price": "100.00", "qty": "60.0000"}
        replies = await asyncio.gather(*(self._place(self.buyer, body) for _ in range(2)))
        codes = sorted(r.status_code for r in replies)
        expect(codes == [201, 409], f"statuses {codes}: {[r.text[:120] for r in replies]}")
        won = next(r for r in replies if r.status_code == 201).json()
        lost = next(r for r in replies if r.status_code == 409).json()
        expect(lost.get("code") == "insufficient_funds", f"refusal {lost.get('code')}")
        cancel = await self._cancel(self.buyer, won["order_id"])
        expect(cancel.status_code == 200, f"cancel answered {cancel.status_code}")
        usd = await self._balance(self.buyer, "USD")
        expect(usd == ("10050.00", "0.00"), f"balance after cancel {usd}")
        return "one placed (then cancelled), one insufficient_funds"

    async def crossing(self) -> str:
        await self._deposit(self.seller, SYMBOL, "5.0000")
        sell = await self._place(self.seller, {"instrument": SYMBOL, "side": "SELL", "price": PRICE, "qty": "2.0000"})
        expect(sell.status_code == 201, f"sell answered {sell.status_code}: {sell.text[:200]}")
        key = secrets.token_hex(8)
        body = {"instrument": SYMBOL, "side": "BUY", "price": PRICE, "qty": "2.0000"}
        buy = await self._place(self.buyer, body, key=key)
        expect(buy.status_code == 201, f"buy answered {buy.status_code}: {buy.text[:200]}")
        out = buy.json()
        expect(out["order_status"] == "filled", f"order {out['order_status']}")
        quote = Decimal(PRICE) * 2
        fee = (quote * 5 / 10_000).quantize(Decimal("0.01"), rounding="ROUND_DOWN")
        expect(out["fee"] == f"{fee:.2f}" and all(f["liquidity"] == "taker" for f in out["fills"]), f"fee {out}")
        maker = await self.http.get(f"/v1/orders/{sell.json()['order_id']}", headers=self.s.headers(self.seller))
        expect(maker.status_code == 200 and maker.json()["order_status"] == "filled"
               and [f["trade_id"] for f in maker.json()["fills"]] == [f["trade_id"] for f in out["fills"]],
               f"the sell did not fill against the buy: {maker.text[:200]}")
        usd = await self._balance(self.buyer, "USD")
        expect(usd == (f"{Decimal('10050.00') - quote - fee:.2f}", "0.00"), f"buyer USD {usd}")
        expect(await self._balance(self.buyer, SYMBOL) == ("2.0000", "0.0000"), "buyer shares")
        expect(await self._balance(self.seller, "USD") == (f"{quote - fee:.2f}", "0.00"), "seller USD")
        self.s.facts.update(buy=out, buy_key=key, buy_body=body)
        return f"trade {out['fills'][0]['trade_id']} at {PRICE}, fee {fee} a side"

    async def time_priority(self) -> str:
        first, second = self.s.account("maker1"), self.s.account("maker2")
        price = "187.43"  # inside the seeded spread, so only these two rest there
        for maker in (first, second):
            await self._deposit(maker, SYMBOL, "5.0000")
        rested = []
        for maker in (first, second):
            sell = await self._place(maker, {"instrument": SYMBOL, "side": "SELL", "price": price, "qty": "5.0000"})
            expect(sell.status_code == 201 and sell.json()["order_status"] == "new", f"sell {sell.text[:200]}")
            rested.append(sell.json()["order_id"])
        buy = await self._place(self.buyer, {"instrument": SYMBOL, "side": "BUY", "price": price, "qty": "5.0000",
                                             "tif": "IOC"})
        expect(buy.status_code == 201, f"buy answered {buy.status_code}: {buy.text[:200]}")
        fills = buy.json()["fills"]
        expect(len(fills) == 1, f"fills {fills}")
        made = await self.http.get(f"/v1/orders/{rested[0]}", headers=self.s.headers(first))
        expect([f["trade_id"] for f in made.json()["fills"]] == [fills[0]["trade_id"]], "filled against another")
        expect(await self._balance(second, SYMBOL) == ("0.0000", "5.0000"), "the second maker traded")
        cancel = await self._cancel(second, rested[1])
        expect(cancel.status_code == 200, f"cancel answered {cancel.status_code}")
        return f"one fill, against {rested[0]} (first in time)"

    async def replay(self) -> str:
        first = self.s.facts["buy"]
        again = await self._place(self.buyer, self.s.facts["buy_body"], key=self.s.facts["buy_key"])
        expect(again.status_code == 201, f"replay answered {again.status_code}")
        expect(again.headers.get("Idempotent-Replayed") == "true", "no Idempotent-Replayed header")
        expect(again.json()["saga_id"] == first["saga_id"], "another saga")
        expect(await self._balance(self.buyer, SYMBOL) == ("2.0000", "0.0000"), "bought twice")
        return f"saga {first['saga_id']} replayed"

    async def key_conflict(self) -> str:
        body = {**self.s.facts["buy_body"], "qty": "3.0000"}
        reply = await self._place(self.buyer, body, key=self.s.facts["buy_key"])
        expect(reply.status_code == 422, f"got {reply.status_code}: {reply.text[:200]}")
        return f"422 {reply.json().get('code')}"

    async def injected(self) -> str:
        body = {"account": self.buyer, "instrument": SYMBOL, "side": "BUY", "price": "100.00", "qty": "1.0000",
                "inject_failure_step": "after:submit_order"}
        before = await self._balance(self.buyer, "USD")
        refused = await self._place(self.buyer, body)
        expect(refused.status_code == 403, f"a trader's injection answered {refused.status_code}")
        reply = await self.http.post("/v1/orders", json=body,  # fault drills are an operator's
                                     headers=self.s.headers(OPS, Role.OPS, key=secrets.token_hex(8)))
        expect(reply.status_code in (200, 201), f"answered {reply.status_code}: {reply.text[:200]}")
        out = reply.json()
        expect(out["status"] == "compensated", f"status {out['status']}")
        expect(await self._balance(self.buyer, "USD") == before, "hold not released")
        order = await self.http.get(f"/v1/orders/{out['order_id']}", headers=self.s.headers(self.buyer))
        expect(order.status_code == 200 and order.json()["order_status"] == "cancelled", f"order {order.text[:200]}")
        return f"saga {out['saga_id']} compensated, order cancelled"

    async def market_data(self) -> str:
        trade_id = self.s.facts["buy"]["fills"][0]["trade_id"]
        deadline = time.monotonic() + 10
        while True:
            tape = (await self.http.get(f"/v1/markets/{SYMBOL}/trades", params={"limit": 1000})).json()
            if any(t["trade_id"] == trade_id for t in tape.get("trades", [])) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        expect(any(t["trade_id"] == trade_id for t in tape.get("trades", [])), f"{trade_id} not in the tape")
        candles = (await self.http.get(f"/v1/markets/{SYMBOL}/candles", params={"tf": "1m", "limit": 5})).json()
        expect(bool(candles.get("candles")) and Decimal(candles["candles"][-1]["volume"]) >= 2, "no candle volume")
        return f"{trade_id} in the tape; last 1m candle volume {candles['candles'][-1]['volume']}"

    async def ws_book(self) -> str:
        url = self.s.base_url.replace("http", "ws", 1) + f"/v1/ws?token={self.s.token(self.buyer)}"
        async with websockets.connect(url, open_timeout=10) as ws:
            await ws.send(json.dumps({"op": "subscribe", "channel": f"book.{SYMBOL}"}))
            snapshot = None
            deadline = time.monotonic() + 10
            while snapshot is None and time.monotonic() < deadline:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if frame.get("type") == "snapshot":
                    snapshot = frame
        expect(snapshot is not None, "no snapshot")
        assert snapshot is not None
        book = (await self.http.get(f"/v1/markets/{SYMBOL}/book", params={"depth": 500})).json()
        if book["seq"] == snapshot["seq"]:
            expect(book["bids"] == snapshot["bids"] and book["asks"] == snapshot["asks"], "snapshot differs")
            expect(book["checksum"] == snapshot["checksum"], "checksum differs")
        return f"snapshot at seq {snapshot['seq']}, {len(snapshot['bids'])} bids / {len(snapshot['asks'])} asks"

    async def ops_views(self) -> str:
        ops = self.s.headers(OPS, Role.OPS)
        dlq = await self.http.get("/v1/ops/dlq", headers=ops)
        expect(dlq.status_code == 200, f"/v1/ops/dlq answered {dlq.status_code}")
        services = (await self.http.get("/v1/services", headers=ops)).json()
        breakers = {name for svc in services.get("services", []) for name in (svc.get("breakers") or {})}
        # clearing keeps one breaker per wallet partition (`wallet.p<n>`) and one per instrument (`matching.<i>`)
        expect(any(b.startswith(f"{WALLET_SERVICE}.p") for b in breakers)
               and any(b.startswith("matching.") for b in breakers),
               f"breakers seen: {sorted(breakers)}")
        return f"{len(dlq.json().get('entries', dlq.json() if isinstance(dlq.json(), list) else []))} parked; " \
               f"breakers {sorted(breakers)}"

    async def metrics(self) -> str:
        reply = await self.http.get("/metrics", headers=self.s.headers(OPS, Role.OPS))
        expect(reply.status_code == 200, f"/metrics answered {reply.status_code}")
        expect("qt_requests_total" in reply.text and 'node="clearing"' in reply.text, "node metrics missing")
        return f"{reply.text.count(chr(10))} lines"

    # --- helpers ---

    async def _deposit(self, account: str, asset: str, amount: str) -> httpx.Response:
        # money enters only through an operator (a trader's deposit is 403)
        return await self.http.post(f"/v1/accounts/{account}/deposits", json={"asset": asset, "amount": amount},
                                    headers=self.s.headers(OPS, Role.OPS, key=secrets.token_hex(8)))

    async def _place(self, account: str, body: dict[str, Any], key: str | None = None) -> httpx.Response:
        return await self.http.post("/v1/orders", json=body,
                                    headers=self.s.headers(account, key=key or secrets.token_hex(8)))

    async def _cancel(self, account: str, order_id: str) -> httpx.Response:
        headers = self.s.headers(account, key=secrets.token_hex(8))
        return await self.http.delete(f"/v1/orders/{order_id}", headers=headers)

    async def _balance(self, account: str, asset: str) -> tuple[str, str]:
        reply = await self.http.get(f"/v1/accounts/{account}/balances", headers=self.s.headers(account))
        row = reply.json().get("balances", {}).get(asset)
        return (row["available"], row["held"]) if row else ("0", "0")


def _hs256(claims: dict[str, Any], secret: bytes) -> str:
    """An HS256 token built by hand (PyJWT refuses to HMAC with a PEM public key, as it should)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = b64(hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"

