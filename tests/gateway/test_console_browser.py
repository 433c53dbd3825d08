"""The `/terminal` console driven in a real headless Chromium (Playwright, the system browser) against a
real `qt up`: every host but 127.0.0.1 unresolvable, so the console works offline. Each test writes a
screenshot of its page into docs/screenshots/ (README links them)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from contracts.gateway import JWT_AUDIENCE, JWT_ISSUER, Role
from gateway.keys import key_paths, load_private
from gateway.tokens import mint
from tests.gateway.test_docs_browser import chromium
from tests.polling import eventually
from tests.procs import REPO
from tests.tooling.harness import QtUp

pytestmark = pytest.mark.slow

SCREENSHOTS = REPO / "docs" / "screenshots"
#: Upper bound of every wait in the browser (a bound, not a speed expectation).
WAIT_MS = 20_000


def playwright_api() -> Any:
    """`playwright.async_api`; in CI (`CI=true`) a missing package fails the test instead of skipping it."""
    try:
        from playwright import async_api
    except ImportError:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail("playwright is not installed (pip install -e '.[test]')")
        pytest.skip("playwright is not installed here (in CI this is a failure, not a skip)")
    return async_api


def usd(cents: int) -> str:
    """A USD price as the API's decimal string (integer cents in, never a float)."""
    return f"{cents // 100}.{cents % 100:02d}"


class Venue:
    """A running `qt up` (no demo seed: every order on the book is the test's own) and an HTTP client."""

    def __init__(self, platform: QtUp) -> None:
        self.platform = platform
        self.url = f"http://127.0.0.1:{platform.http_port}"
        self.http = httpx.AsyncClient(base_url=self.url, timeout=30)

    @property
    def ops(self) -> str:
        """An operator's token."""
        return self.token("operator", Role.OPS)

    def token(self, account: str, role: Role = Role.TRADER) -> str:
        """A token signed with the platform's gateway key (as `qt token` mints it)."""
        return mint(load_private(key_paths(self.platform.data_dir)[0]), account=account, role=role, ttl_s=3600,
                    issuer=JWT_ISSUER, audience=JWT_AUDIENCE)

    async def call(self, method: str, path: str, token: str, body: dict[str, Any] | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex}
        response = await self.http.request(method, path, headers=headers, json=body)
        assert response.status_code < 300, response.text
        return response.json()

    async def funded(self, prefix: str) -> tuple[str, str]:
        """A new account with money in every asset, and its trader token."""
        account = f"{prefix}-{uuid.uuid4().hex[:8]}"
        for asset, amount in (("USD", "1000000.00"), ("AAPL", "1000.0000"), ("MSFT", "1000.0000"),
                              ("NVDA", "1000.0000"), ("BTC", "10.00000000")):
            await self.call("POST", f"/v1/accounts/{account}/deposits", self.ops, {"asset": asset, "amount": amount})
        return account, self.token(account)

    async def order(self, token: str, **body: str) -> dict[str, Any]:
        reply: dict[str, Any] = await self.call("POST", "/v1/orders", token, body)
        assert reply["status"] == "completed", reply
        return reply

    async def book(self, symbol: str) -> dict[str, Any]:
        response = await self.http.get(f"/v1/markets/{symbol}/book", params={"depth": 15})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def balance(self, account: str, token: str, asset: str) -> dict[str, str]:
        reply = await self.call("GET", f"/v1/accounts/{account}/balances", token)
        found: dict[str, str] = reply["balances"][asset]
        return found


@pytest.fixture(scope="module")
def qt_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QtUp]:
    platform = QtUp(tmp_path_factory.mktemp("console") / "data").start()
    try:
        platform.wait_ready()
        yield platform
    finally:
        platform.cleanup()


@pytest.fixture(scope="module")
async def venue(qt_up: QtUp) -> AsyncIterator[Venue]:
    made = Venue(qt_up)
    try:
        # the gateway starts alongside the nodes (and makes its key pair first)
        await eventually(lambda: made.http.get("/ready"), lambda r: r.status_code == 200, timeout_s=60, every_s=0.1,
                         ignoring=(httpx.TransportError,), what="the gateway ready")
        assert key_paths(qt_up.data_dir)[0].exists(), "the gateway never became ready"
        yield made
    finally:
        await made.http.aclose()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    path = chromium()
    api = playwright_api()
    async with api.async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=path, args=[
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"])
        try:
            yield launched
        finally:
            await launched.close()


class Console:
    """One page of the console signed in with a token; collects page errors and off-host requests."""

    def __init__(self, page: Any, venue: Venue) -> None:
        self.page = page
        self.venue = venue
        self.errors: list[str] = []
        self.foreign: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("request", lambda req: None if req.url.startswith((venue.url, "data:")) else self.foreign.append(
            req.url))

    async def open(self, token: str, tab: str = "market") -> Console:
        await self.page.goto(f"{self.venue.url}/")  # `/` leads to /terminal/
        await self.page.wait_for_selector("body[data-ready=true]", timeout=WAIT_MS)
        await self.page.fill("#token", token)
        await self.page.click("#session button[type=submit]")
        await self.page.wait_for_selector("#live.ok", timeout=WAIT_MS)
        await self.page.click(f"#tab-{tab}")
        return self

    async def until(self, script: str, arg: Any = None) -> Any:
        """Wait until the JS expression (a function of `arg`) is truthy; its value."""
        handle = await self.page.wait_for_function(script, arg=arg, timeout=WAIT_MS)
        return await handle.json_value()

    async def ladder(self) -> tuple[list[list[str]], list[list[str]]]:
        """(bids best first, asks best first) as the ladder shows them."""
        found: dict[str, list[list[str]]] = await self.page.evaluate("""() => ({
            bids: [...document.querySelectorAll('#bids tr.bid')].map(r => [r.dataset.price, r.dataset.qty]),
            asks: [...document.querySelectorAll('#asks tr.ask')].map(r => [r.dataset.price, r.dataset.qty]).reverse(),
        })""")
        return found["bids"], found["asks"]

    async def select(self, symbol: str) -> None:
        await self.page.select_option("#instrument", symbol)
        await self.until("s => window.qt.market.symbol === s && !window.qt.market.syncing", symbol)

    async def ladder_at(self, book: dict[str, Any]) -> None:
        """Wait until the live ladder reflects the journal sequence of an HTTP book."""
        await self.until("seq => document.querySelector('#ladder').dataset.seq === String(seq)", book["seq"])

    async def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))

    def clean(self) -> None:
        assert self.errors == [], self.errors
        assert self.foreign == [], f"the console fetched off-host: {self.foreign}"


@pytest.fixture
async def console(browser: Any, venue: Venue) -> AsyncIterator[Console]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        made = Console(await context.new_page(), venue)
        yield made
        made.clean()
    finally:
        await context.close()


async def test_ladder_matches_http_book_and_resyncs_on_a_bad_checksum(console: Console, venue: Venue) -> None:
    _, maker = await venue.funded("lad")
    for i in range(3):
        await venue.order(maker, instrument="MSFT", side="BUY", price=f"41{i}.00", qty="2.0000")
        await venue.order(maker, instrument="MSFT", side="SELL", price=f"42{i}.50", qty="1.5000")
    await console.open(maker)
    await console.select("MSFT")
    await venue.order(maker, instrument="MSFT", side="BUY", price="411.00", qty="0.2500")  # live: an update frame
    await venue.order(maker, instrument="MSFT", side="SELL", price="419.99", qty="1.0000")
    book = await venue.book("MSFT")
    await console.ladder_at(book)
    assert await console.ladder() == (book["bids"], book["asks"])
    assert ["411.00", "2.2500"] in book["bids"]
    assert await console.page.is_hidden("#resynced")

    # A level the feed never sent: the next update's checksum cannot match, so the page resyncs.
    await console.page.evaluate("() => window.qt.market.book.bids.set('1.00', '1.0000')")
    await venue.order(maker, instrument="MSFT", side="BUY", price="409.00", qty="1.0000")
    book = await venue.book("MSFT")
    await console.until("() => document.querySelector('#resynced').dataset.reason === 'checksum'")
    await console.ladder_at(book)
    assert await console.ladder() == (book["bids"], book["asks"])
    await console.page.set_viewport_size({"width": 390, "height": 844})  # a phone: nothing wider than the screen
    await console.until("() => document.documentElement.scrollWidth <= 390")  # once the chart has re-laid out
    await console.shot("market-phone")


async def test_without_a_token_the_market_page_polls_http(console: Console, venue: Venue) -> None:
    _, maker = await venue.funded("anon")
    await console.page.goto(f"{venue.url}/terminal")
    await console.page.wait_for_selector("body[data-ready=true]", timeout=WAIT_MS)
    assert await console.page.inner_text("#live") == "offline"
    await console.page.select_option("#instrument", "NVDA")
    await console.until("() => document.querySelector('#book-meta').textContent.endsWith('http')")
    await venue.order(maker, instrument="NVDA", side="SELL", price="990.00", qty="1.0000")  # seen by the next poll
    await console.until("() => [...document.querySelectorAll('#asks tr.ask')].some(r => r.dataset.price === '990.00')")
    await console.page.click("#tab-trade")
    await console.page.wait_for_selector(".need-token", state="visible", timeout=WAIT_MS)

    # Keyboard: every control has a label, and the arrow keys walk the tabs.
    unlabelled = await console.page.evaluate("""() => [...document.querySelectorAll('input, select, button')]
        .filter(e => !(e.labels?.length || e.getAttribute('aria-label') || e.textContent.trim())).map(e => e.id)""")
    assert unlabelled == []
    await console.page.focus("#tab-trade")
    await console.page.keyboard.press("ArrowRight")
    assert await console.page.evaluate("() => [location.hash, document.activeElement.id]") == ["#sagas", "tab-sagas"]
    # the page switch follows the hash change a moment later: wait for it (bounded), do not sample it
    await console.page.wait_for_selector("#page-sagas", state="visible", timeout=WAIT_MS)
    await console.page.wait_for_selector("#page-trade", state="hidden", timeout=WAIT_MS)


async def test_form_order_rests_in_the_book_then_trades_on_the_tape(console: Console, venue: Venue) -> None:
    account, token = await venue.funded("form")
    _, other = await venue.funded("cross")
    await console.open(token, "trade")
    before = await venue.balance(account, token, "USD")

    # A refused order shows the API's problem+json and changes nothing.
    await console.page.select_option("#o-instrument", "AAPL")
    await console.page.fill("#o-price", "150.001")
    await console.page.fill("#o-qty", "1.0000")
    await console.page.click("#o-submit")
    error = await console.until("() => document.querySelector('#order-result.err')?.textContent")
    assert "422" in error and "invalid_amount" in error, error
    assert await venue.balance(account, token, "USD") == before

    await console.page.fill("#o-price", "150.00")
    await console.page.fill("#o-qty", "3.0000")
    await console.page.click("#o-submit")
    order_id = await console.until("() => document.querySelector('#order-result.ok')?.dataset.orderId")
    await console.until("id => document.querySelector(`#open-orders tr[data-order='${id}']`)", order_id)
    await console.shot("trade")

    await console.page.click("#tab-market")
    await console.select("AAPL")
    book = await venue.book("AAPL")
    assert ["150.00", "3.0000"] in book["bids"]
    await console.ladder_at(book)
    assert ["150.00", "3.0000"] in (await console.ladder())[0]

    # Another account sells into it: the trade reaches the tape, the ladder shrinks to what is left.
    await venue.order(other, instrument="AAPL", side="SELL", price="150.00", qty="1.0000", tif="IOC")
    trade = (await venue.http.get("/v1/markets/AAPL/trades", params={"limit": 1})).json()["trades"][0]
    assert (trade["price"], trade["qty"]) == ("150.00", "1.0000")
    await console.until("id => document.querySelector(`#tape tr[data-trade='${id}']`)", trade["trade_id"])
    book = await venue.book("AAPL")
    await console.ladder_at(book)
    assert ["150.00", "2.0000"] in (await console.ladder())[0]
    await console.until("() => window.qt.market.series.data().some(c => c.close === 150)")  # the live candle
    await console.until("() => [...document.querySelectorAll('#ticker dd')][0]?.textContent === '150.00'")

    # More live activity (a deeper book, trades both ways); the ladder follows it level for level.
    for i in range(6):
        await venue.order(other, instrument="AAPL", side="SELL", price=usd(15050 + 10 * i), qty=f"{i + 1}.0000")
        await venue.order(token, instrument="AAPL", side="BUY", price=usd(14990 - 10 * i), qty="1.5000")
    await venue.order(token, instrument="AAPL", side="BUY", price="150.60", qty="2.5000", tif="IOC")
    await venue.order(other, instrument="AAPL", side="SELL", price="149.80", qty="3.0000", tif="IOC")
    book = await venue.book("AAPL")
    await console.ladder_at(book)
    assert await console.ladder() == (book["bids"], book["asks"])
    await console.until("() => document.querySelectorAll('#tape tbody tr[data-trade]').length >= 4")
    await console.shot("market")


async def test_cancel_from_the_page_releases_the_hold_in_balances(console: Console, venue: Venue) -> None:
    account, token = await venue.funded("cancel")
    await console.open(token, "trade")
    start = await venue.balance(account, token, "USD")
    await console.page.select_option("#o-instrument", "NVDA")
    await console.page.fill("#o-price", "700.00")
    await console.page.fill("#o-qty", "2.0000")
    await console.page.click("#o-submit")
    order_id = await console.until("() => document.querySelector('#order-result.ok')?.dataset.orderId")
    held = await venue.balance(account, token, "USD")
    assert held["held"] != "0.00"
    await console.until("h => document.querySelector('#balances tr[data-asset=USD] .held')?.textContent === h",
                        held["held"])
    await console.page.click(f"#open-orders tr[data-order='{order_id}'] button.cancel")
    await console.until("() => document.querySelector('#balances tr[data-asset=USD] .held')?.textContent === '0.00'")
    shown = await console.page.inner_text("#balances tr[data-asset=USD] .avail")
    assert shown == start["available"] == (await venue.balance(account, token, "USD"))["available"]
    await console.until("id => !document.querySelector(`#open-orders tr[data-order='${id}']`)", order_id)


async def test_injected_failure_shows_compensated_in_the_timeline(console: Console, venue: Venue) -> None:
    account, _ = await venue.funded("saga")
    await console.open(venue.ops, "sagas")
    await console.page.fill("#i-account", account)
    await console.page.select_option("#i-instrument", "BTC-USD")
    await console.page.select_option("#i-side", "BUY")
    await console.page.fill("#i-price", "60000.00")
    await console.page.fill("#i-qty", "0.01000000")
    await console.page.select_option("#i-step", "after:submit_order")
    await console.page.click("#inject-form button[type=submit]")
    await console.until("() => document.querySelector('#saga-status-out').textContent === 'compensated'")
    steps = await console.page.evaluate(
        "() => [...document.querySelectorAll('#timeline tr.compensation')].map(r => r.dataset.step)")
    assert "release_hold" in steps, steps
    saga_id = await console.page.inner_text("#saga-id")
    await console.page.select_option("#saga-status", "compensated")
    # Newest first, and only the status asked for.
    await console.until("""id => {
        const rows = [...document.querySelectorAll('#saga-list tbody tr')];
        return rows[0]?.dataset.saga === id && rows.every(r => r.cells[5]?.textContent === 'compensated');
    }""", saga_id)
    await console.shot("sagas")


async def test_rebuild_reports_identical_and_services_list_every_node(console: Console, venue: Venue) -> None:
    account, token = await venue.funded("wallet")
    await venue.order(token, instrument="AAPL", side="BUY", price="100.00", qty="1.0000")
    await console.open(venue.ops, "wallet")
    await console.page.fill("#w-account", account)
    await console.page.click("#wallet-form button[type=submit]")
    await console.until("() => document.querySelectorAll('#w-events tbody tr').length >= 6")
    await console.page.click("#w-rebuild")
    text = await console.until("() => document.querySelector('#wallet-result.ok')?.textContent")
    assert text.startswith("identical"), text
    await console.page.click("#w-verify")
    await console.until("() => document.querySelector('#wallet-result.ok')?.textContent.startsWith('chain ok')")
    await console.page.click("#w-rebuild-all")
    await console.until("() => document.querySelector('#wallet-result.ok')?.textContent.startsWith('identical')")
    await console.page.click("#w-verify-all")
    await console.until("() => document.querySelector('#wallet-result.ok')?.textContent.startsWith('all chains ok')")
    await console.page.click("#w-rebuild")
    await console.until("() => document.querySelector('#wallet-result.ok')?.textContent.startsWith('identical')")
    await console.shot("wallet")

    await console.page.click("#tab-services")
    names = await console.until("""() => {
        const names = new Set([...document.querySelectorAll('#services tr[data-service]')].map(r => r.dataset.service));
        return names.size >= 4 && [...names].sort();
    }""")
    assert {"clearing", "marketdata", "matching", "wallet"} <= set(names)
    # streams with their consumers' lag and the leases held, as GET /v1/ops/streams reports them
    shown = await console.until("""() => {
        const consumers = [...document.querySelectorAll('#consumers tr[data-consumer]')]
            .map(r => r.dataset.stream + '/' + r.dataset.consumer);
        const leases = [...document.querySelectorAll('#leases tr[data-lease]')].map(r => r.dataset.lease);
        return consumers.length && leases.length && {consumers, leases};
    }""")
    assert "EXEC/clearing-exec" in shown["consumers"]
    assert "wallet.p0" in shown["leases"]
    await console.shot("services")
