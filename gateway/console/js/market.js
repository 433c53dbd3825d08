// Market page: instrument picker, verified L2 ladder (depth 15), tape, ticker, candles.
import { get } from "./api.js";
import { L2Book, units } from "./book.js";
import { $, el, rows, time } from "./dom.js";

const DEPTH = 15;
const TAPE = 60;

export class Market {
  constructor(feed, instruments) {
    this.feed = feed;
    this.instruments = instruments;
    this.symbol = instruments[0].instrument;
    this.tf = "1m";
    this.book = new L2Book();
    this.syncing = true; // until a snapshot arrives, updates are ignored
    this.resyncs = 0;
    this.failures = 0; // resyncs in a row without a good update since
    this.tape = [];
    this.poll = null;
    const picker = $("#instrument");
    picker.replaceChildren(...instruments.map((i) => el("option", { value: i.instrument }, i.instrument)));
    picker.addEventListener("change", () => this.select(picker.value));
    for (const button of document.querySelectorAll("[data-tf]")) {
      button.addEventListener("click", () => this.timeframe(button.dataset.tf));
    }
    this._chart();
    feed.addEventListener("status", () => this._pollIfOffline());
  }

  get spec() {
    return this.instruments.find((i) => i.instrument === this.symbol);
  }

  channels(symbol = this.symbol, tf = this.tf) {
    return [`book.${symbol}`, `trades.${symbol}`, `ticker.${symbol}`, `candles.${symbol}.${tf}`];
  }

  async select(symbol) {
    for (const channel of this.channels()) this.feed.unsubscribe(channel);
    this.symbol = symbol;
    $("#instrument").value = symbol;
    this.book.reset();
    this.syncing = true;
    this.tape = [];
    await this.load();
    this.feed.subscribe(`book.${symbol}`, (f) => this.onBook(f));
    this.feed.subscribe(`trades.${symbol}`, (f) => this.onTrade(f.data));
    this.feed.subscribe(`ticker.${symbol}`, (f) => this.renderTicker(f.data));
    this.feed.subscribe(`candles.${symbol}.${this.tf}`, (f) => this.onCandle(f.data));
    this._pollIfOffline();
  }

  async timeframe(tf) {
    this.feed.unsubscribe(`candles.${this.symbol}.${this.tf}`);
    this.tf = tf;
    for (const b of document.querySelectorAll("[data-tf]")) b.setAttribute("aria-pressed", String(b.dataset.tf === tf));
    await this.loadCandles();
    this.feed.subscribe(`candles.${this.symbol}.${tf}`, (f) => this.onCandle(f.data));
  }

  /** Everything over HTTP: the starting state (and, without a live socket, the polled state). */
  async load() {
    const s = this.symbol;
    const [book, trades, ticker] = await Promise.all([
      get(`/v1/markets/${s}/book`, { depth: DEPTH }),
      get(`/v1/markets/${s}/trades`, { limit: TAPE }).catch(() => ({ trades: [] })),
      get(`/v1/markets/${s}/ticker`).catch(() => null),
    ]);
    if (this.syncing && s === this.symbol) this.renderLadder(book.bids, book.asks, `seq ${book.seq} · http`);
    this.tape = trades.trades;
    this.renderTape();
    if (ticker) this.renderTicker(ticker);
    await this.loadCandles();
  }

  async loadCandles() {
    const reply = await get(`/v1/markets/${this.symbol}/candles`, { tf: this.tf, limit: 300 }).catch(() => null);
    const data = (reply?.candles || []).map(candle);
    this.series.setData(data);
    if (data.length > 60) this.chart.timeScale().fitContent(); // a few bars keep their width, not the panel's
    else this.chart.timeScale().scrollToRealTime();
  }

  onBook(frame) {
    let verdict;
    if (frame.type === "snapshot") {
      verdict = this.book.snapshot(frame);
      this.syncing = verdict !== "ok";
    } else if (frame.type === "update") {
      if (this.syncing) return; // a frame of the old subscription: the snapshot is on its way
      verdict = this.book.update(frame);
    } else {
      return;
    }
    if (verdict !== "ok") {
      // A missed frame or a book that no longer adds up: start over from a fresh snapshot.
      this.syncing = true;
      this.resyncs += 1;
      const badge = $("#resynced");
      badge.hidden = false;
      badge.textContent = `resynced ×${this.resyncs} (${verdict})`;
      badge.dataset.reason = verdict;
      // Back off when resyncs follow each other (a persistent fault must not flood the socket).
      const symbol = this.symbol;
      const delay = this.failures ? Math.min(250 * 2 ** (this.failures - 1), 5000) : 0;
      this.failures += 1;
      setTimeout(() => { if (symbol === this.symbol) this.feed.resubscribe(`book.${symbol}`); }, delay);
      return;
    }
    if (frame.type === "update") this.failures = 0;
    const [bids, asks] = this.book.levels(DEPTH);
    this.renderLadder(bids, asks, `seq ${this.book.seq} · crc ${frame.checksum} ✓`);
  }

  renderLadder(bids, asks, meta) {
    const max = [...bids, ...asks].reduce((m, [, q]) => (units(q) > m ? units(q) : m), 1n);
    const side = (levels, kind) => {
      let total = 0;
      return levels.map(([p, q]) => {
        total += Number(q);
        const pct = Number((units(q) * 100n) / max);
        return el("tr", { class: kind, dataset: { price: p, qty: q }, style: `--depth:${pct}%` },
          el("td", {}, p), el("td", {}, q), el("td", {}, total.toFixed(q.split(".")[1]?.length || 0)));
      });
    };
    rows($("#asks"), side(asks, "ask").reverse(), "no asks");
    rows($("#bids"), side(bids, "bid"), "no bids");
    const spread = bids.length && asks.length ? (Number(asks[0][0]) - Number(bids[0][0])).toFixed(
      asks[0][0].split(".")[1]?.length || 0) : "—";
    $("#spread").textContent = `spread ${spread}`;
    $("#book-meta").textContent = meta;
    $("#ladder").dataset.seq = String(this.book.seq ?? "");
  }

  onTrade(trade) {
    if (trade.kind === "bust") { // a failed saga reversed it: the tape strikes it through
      for (const t of this.tape) if (t.trade_id === trade.trade_id) t.busted = true;
      this.renderTape();
      return;
    }
    this.tape.unshift(trade);
    this.tape.length = Math.min(this.tape.length, TAPE);
    this.renderTape();
  }

  renderTape() {
    rows($("#tape tbody"), this.tape.map((t) => el("tr", { class: `${t.taker_side === "BUY" ? "bid" : "ask"}${
      t.busted ? " busted" : ""}`,
      dataset: { trade: t.trade_id } }, el("td", {}, time(t.ts)), el("td", {}, t.price), el("td", {}, t.qty),
    el("td", {}, t.taker_side))), "no trades yet");
  }

  renderTicker(t) {
    const up = t.change && !t.change.startsWith("-");
    const items = [["Last", t.last ?? "—"], ["Chg", t.change ?? "—"], ["High", t.high ?? "—"], ["Low", t.low ?? "—"],
      ["Vol", t.volume], ["Trades", t.trades]];
    $("#ticker").replaceChildren(...items.flatMap(([k, v]) => [el("dt", {}, k),
      el("dd", { class: k === "Chg" || k === "Last" ? (up ? "up" : t.change ? "down" : "") : "" }, v)]));
  }

  onCandle(c) {
    if (c.tf && c.tf !== this.tf) return;
    this.series.update(candle(c));
  }

  _chart() {
    const box = $("#chart");
    this.chart = LightweightCharts.createChart(box, {
      autoSize: true,
      layout: { background: { color: "#0b0f14" }, textColor: "#8b98a5", fontFamily: "ui-monospace, monospace" },
      grid: { vertLines: { color: "#16202b" }, horzLines: { color: "#16202b" } },
      timeScale: { timeVisible: true, secondsVisible: false, borderColor: "#223", rightOffset: 6, barSpacing: 12 },
      rightPriceScale: { borderColor: "#223" },
    });
    this.series = this.chart.addCandlestickSeries({ upColor: "#1fd67a", downColor: "#ff4d5e", borderVisible: false,
      wickUpColor: "#1fd67a", wickDownColor: "#ff4d5e" });
  }

  /** Without a live socket (no token, or reconnecting) the page polls the HTTP endpoints. */
  _pollIfOffline() {
    clearInterval(this.poll);
    if (this.feed.state === "live") return;
    this.poll = setInterval(() => { if (!document.hidden) this.load().catch(() => {}); }, 3000);
  }
}

function candle(c) {
  return { time: Math.floor(c.start / 1000), open: Number(c.open), high: Number(c.high), low: Number(c.low),
    close: Number(c.close) };
}

