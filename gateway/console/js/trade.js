// Trade page: balances (live from the `balances` channel), order entry, open orders with cancel, fills.
import { ApiError, claims, del, get, post } from "./api.js";
import { $, el, rows, short, toast } from "./dom.js";

const OPEN = new Set(["new", "partially_filled"]);

export class Trade {
  constructor(feed, instruments) {
    this.feed = feed;
    const picker = $("#o-instrument");
    picker.replaceChildren(...instruments.map((i) => el("option", { value: i.instrument }, i.instrument)));
    $("#o-type").addEventListener("change", () => this._typeChanged());
    $("#order-form").addEventListener("submit", (e) => { e.preventDefault(); this.place(); });
    this.pending = {};
    this.asked = { balances: 0, orders: 0 }; // request counters: only the latest reply is shown
  }

  get account() {
    return claims()?.sub || "";
  }

  /** (Re)start for the current token: load everything and follow the private channels. */
  async start() {
    this.feed.unsubscribe("balances");
    this.feed.unsubscribe("orders");
    if (!this.account) {
      rows($("#balances tbody"), [], "no token");
      return;
    }
    $("#bal-account").textContent = this.account;
    this.feed.subscribe("balances", () => this._soon("balances", () => this.loadBalances()));
    this.feed.subscribe("orders", () => this._soon("orders", () => this.loadOrders()));
    await Promise.all([this.loadBalances(), this.loadOrders()]);
  }

  /** Frames come in bursts (a fill moves several balances): one refresh after each burst. */
  _soon(key, fn) {
    clearTimeout(this.pending[key]);
    this.pending[key] = setTimeout(fn, 120);
  }

  async loadBalances() {
    const ask = (this.asked.balances += 1);
    try {
      const reply = await get(`/v1/accounts/${encodeURIComponent(this.account)}/balances`);
      if (ask !== this.asked.balances) return; // a newer reply wins, whichever lands first
      rows($("#balances tbody"), Object.entries(reply.balances).sort().map(([asset, b]) => el("tr",
        { dataset: { asset } }, el("td", {}, asset), el("td", { class: "avail" }, b.available),
        el("td", { class: "held" }, b.held))), "no balances");
    } catch (err) {
      rows($("#balances tbody"), [], describe(err));
    }
  }

  async loadOrders() {
    let sagas;
    const ask = (this.asked.orders += 1);
    try {
      sagas = (await get("/v1/orders", { limit: 100 })).sagas;
      if (ask !== this.asked.orders) return;
    } catch (err) {
      rows($("#open-orders tbody"), [], describe(err));
      return;
    }
    const open = sagas.filter((s) => OPEN.has(s.order_status) && s.status === "completed");
    rows($("#open-orders tbody"), open.map((s) => el("tr", { dataset: { order: s.order_id } },
      el("td", { title: s.order_id }, short(s.order_id, 12)), el("td", {}, s.instrument),
      el("td", { class: s.side === "BUY" ? "up" : "down" }, s.side), el("td", {}, s.qty), el("td", {}, s.filled),
      el("td", {}, s.remaining), el("td", {}, s.order_status),
      el("td", {}, el("button", { type: "button", class: "cancel", "aria-label": `Cancel order ${s.order_id}`,
        onclick: (e) => this.cancel(s.order_id, e.currentTarget) }, "Cancel")))), "no open orders");
    const fills = sagas.flatMap((s) => s.fills.map((f) => ({ ...f, instrument: s.instrument })));
    rows($("#fills tbody"), fills.slice(0, 100).map((f) => el("tr", { class: f.busted ? "busted" : "",
      dataset: { trade: f.trade_id } }, el("td", {}, f.trade_id), el("td", {}, f.instrument),
    el("td", { class: f.side === "BUY" ? "up" : "down" }, f.side), el("td", {}, f.price), el("td", {}, f.qty),
    el("td", {}, `${f.fee} ${f.fee_asset}`), el("td", {}, f.liquidity + (f.busted ? " (busted)" : "")))),
    "no fills");
  }

  async place() {
    const form = $("#order-form");
    const data = new FormData(form);
    const body = { instrument: data.get("instrument"), side: data.get("side"), type: data.get("type"),
      tif: data.get("tif"), qty: data.get("qty").trim() };
    if (body.type === "LIMIT") body.price = data.get("price").trim();
    if (data.get("post_only")) body.post_only = true;
    const out = $("#order-result");
    out.className = "result";
    out.textContent = "placing…";
    $("#o-submit").disabled = true;
    try {
      const saga = await post("/v1/orders", body);
      out.className = "result ok";
      out.dataset.orderId = saga.order_id;
      out.textContent = `${saga.status} · ${saga.order_status ?? ""} · filled ${saga.filled}/${saga.qty} · ` +
        `order ${saga.order_id}` + (saga.error ? ` · ${saga.error.code}: ${saga.error.message}` : "");
      await Promise.all([this.loadBalances(), this.loadOrders()]);
    } catch (err) {
      out.className = "result err";
      out.textContent = describe(err);
    } finally {
      $("#o-submit").disabled = false;
    }
  }

  async cancel(orderId, button) {
    button.disabled = true;
    try {
      const order = await del(`/v1/orders/${encodeURIComponent(orderId)}`);
      toast(`cancelled ${short(orderId, 12)}: ${order.status}`, "ok");
    } catch (err) {
      toast(describe(err), "err");
      button.disabled = false;
    }
    await Promise.all([this.loadBalances(), this.loadOrders()]);
  }

  _typeChanged() {
    const market = $("#o-type").value === "MARKET";
    $("#o-price").disabled = market;
    $("#o-post").disabled = market;
  }
}

export function describe(err) {
  return err instanceof ApiError ? err.describe() : String(err.message || err);
}
