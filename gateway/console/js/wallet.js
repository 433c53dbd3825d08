// Wallet page (ops): one account's balances and hash-chained events, Rebuild and Verify.
import { claims, get, post } from "./api.js";
import { $, el, rows, short } from "./dom.js";
import { describe } from "./trade.js";

export class Wallet {
  constructor() {
    $("#wallet-form").addEventListener("submit", (e) => { e.preventDefault(); this.load(); });
    $("#w-rebuild").addEventListener("click", () => this.rebuild());
    $("#w-verify").addEventListener("click", () => this.verify());
    $("#w-verify-all").addEventListener("click", () => this.verifyAll());
    $("#w-rebuild-all").addEventListener("click", () => this.rebuildAll());
  }

  /** A trader's page opens on its own account. */
  start() {
    if (!$("#w-account").value) $("#w-account").value = claims()?.sub || "";
  }

  async verifyAll() {
    this.say("verifying every account…", "");
    try {
      const r = await get("/v1/ops/verify");
      this.say(r.ok ? `all chains ok · ${r.events_checked} events, ${r.snapshots_checked} snapshots checked`
        : `chain broken at ${JSON.stringify(r.first_bad)}`, r.ok ? "ok" : "err");
    } catch (err) {
      this.say(describe(err), "err");
    }
  }

  async rebuildAll() {
    this.say("rebuilding every account from the event log…", "");
    try {
      const r = await post("/v1/ops/rebuild", {});
      this.say(r.identical ? `identical · ${r.accounts} accounts, ${r.events_replayed} events replayed`
        : `drift · ${r.mismatches.map((m) => JSON.stringify(m)).join("; ")}`, r.identical ? "ok" : "err");
    } catch (err) {
      this.say(describe(err), "err");
    }
  }

  get account() {
    return encodeURIComponent($("#w-account").value.trim());
  }

  say(text, kind) {
    const out = $("#wallet-result");
    out.textContent = text;
    out.className = `result ${kind}`;
  }

  async load() {
    if (!this.account) { this.say("name an account", "err"); return; }
    try {
      const [balances, events] = await Promise.all([get(`/v1/accounts/${this.account}/balances`),
        get(`/v1/accounts/${this.account}/events`, { limit: 1000 })]);
      rows($("#w-balances tbody"), Object.entries(balances.balances).sort().map(([asset, b]) => el("tr",
        { dataset: { asset } }, el("td", {}, asset), el("td", {}, b.available), el("td", {}, b.held),
        el("td", {}, b.version))), "no balances");
      rows($("#w-events tbody"), events.events.map((e) => el("tr", {}, el("td", {}, e.seq), el("td", {}, e.type),
        el("td", {}, e.asset), el("td", {}, e.amount), el("td", { title: e.hold_id || "" }, short(e.hold_id, 12)),
        el("td", { title: e.op_id }, short(e.op_id, 20)), el("td", { title: e.hash }, short(e.hash, 12)))),
      "no events");
      this.say(`${events.events.length} events`, "");
    } catch (err) {
      this.say(describe(err), "err");
    }
  }

  async rebuild() {
    if (!this.account) { this.say("name an account", "err"); return; }
    this.say("rebuilding from the event log…", "");
    try {
      const r = await post(`/v1/accounts/${this.account}/rebuild`, {});
      const drift = r.mismatches.map((m) => JSON.stringify(m)).join("; ");
      this.say(r.identical ? `identical · ${r.events_replayed} events replayed, ${r.snapshots_used} snapshots, ` +
        `${(r.elapsed_us / 1000).toFixed(1)} ms` : `drift · ${drift}`, r.identical ? "ok" : "err");
    } catch (err) {
      this.say(describe(err), "err");
    }
  }

  async verify() {
    if (!this.account) { this.say("name an account", "err"); return; }
    try {
      const r = await get(`/v1/accounts/${this.account}/verify`);
      this.say(r.ok ? `chain ok · ${r.events_checked} events, ${r.snapshots_checked} snapshots checked`
        : `chain broken at ${JSON.stringify(r.first_bad)}`, r.ok ? "ok" : "err");
    } catch (err) {
      this.say(describe(err), "err");
    }
  }
}
