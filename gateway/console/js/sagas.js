// Sagas page: newest first with a status filter, one saga's timeline, and the ops fault drill.
import { claims, get, post } from "./api.js";
import { $, el, rows, short, timeNs } from "./dom.js";
import { describe } from "./trade.js";

export class Sagas {
  constructor(instruments) {
    $("#i-instrument").replaceChildren(...instruments.map((i) => el("option", { value: i.instrument }, i.instrument)));
    $("#saga-status").addEventListener("change", () => this.load());
    $("#saga-refresh").addEventListener("click", () => this.load());
    $("#saga-more").addEventListener("click", () => this.load(this.cursor));
    this.cursor = null;
    $("#inject-form").addEventListener("submit", (e) => { e.preventDefault(); this.inject(); });
  }

  /** The first page (or, with the previous page's `next_cursor`, the next one appended). */
  async load(cursor = null) {
    const tbody = $("#saga-list tbody");
    const ask = (this.asked = (this.asked || 0) + 1);
    try {
      const reply = await get("/v1/sagas", { status: $("#saga-status").value, limit: 100, cursor });
      if (ask !== this.asked) return; // a newer request (another filter) owns the table now
      this.cursor = reply.next_cursor;
      $("#saga-more").hidden = !reply.next_cursor;
      const kept = cursor ? [...tbody.querySelectorAll("tr[data-saga]")] : [];
      rows(tbody, [...kept, ...reply.sagas.map((s) => el("tr", { dataset: { saga: s.saga_id } },
        el("td", {}, el("button", { type: "button", class: "link", title: s.saga_id,
          "aria-label": `Show saga ${s.saga_id}`, onclick: () => this.show(s.saga_id) }, short(s.saga_id, 14))),
        el("td", {}, s.account), el("td", {}, s.instrument), el("td", { class: s.side === "BUY" ? "up" : "down" },
          s.side), el("td", {}, s.qty), el("td", { class: `st-${s.status}` }, s.status),
        el("td", {}, s.order_status ?? "")))], "no sagas");
    } catch (err) {
      rows(tbody, [], describe(err));
    }
  }

  async show(sagaId) {
    const tbody = $("#timeline tbody");
    $("#saga-id").textContent = sagaId;
    const ask = (this.shown = (this.shown || 0) + 1);
    try {
      const saga = await get(`/v1/sagas/${encodeURIComponent(sagaId)}`);
      if (ask !== this.shown) return; // another saga was asked for since
      const status = $("#saga-status-out");
      status.textContent = saga.status;
      status.className = `pill st-${saga.status}`;
      status.title = saga.error ? `${saga.error.code}: ${saga.error.message}` : "";
      $("#saga-error").textContent = saga.error ? `${saga.error.code} at ${saga.error.step ?? "?"}: ${saga.error.message}`
        : "";
      const line = (kind) => (step) => el("tr", { class: kind, dataset: { step: step.name, status: step.status } },
        el("td", {}, kind), el("td", {}, step.name), el("td", { class: `st-${step.status}` }, step.status),
        el("td", { title: step.op_id }, short(step.op_id, 24)), el("td", {}, timeNs(step.started_ns)),
        el("td", {}, step.started_ns && step.ended_ns ? ((step.ended_ns - step.started_ns) / 1e6).toFixed(1) : ""),
        el("td", {}, step.attempts), el("td", {}, step.error ? `${step.error.code}: ${step.error.message}` : ""));
      rows(tbody, [...(saga.steps || []).map(line("step")), ...(saga.compensations || []).map(line("compensation"))],
        "no steps");
    } catch (err) {
      rows(tbody, [], describe(err));
    }
  }

  async inject() {
    const data = new FormData($("#inject-form"));
    const body = Object.fromEntries([...data.entries()].map(([k, v]) => [k, String(v).trim()]));
    if (!body.account) body.account = claims()?.sub;
    const out = $("#inject-result");
    out.className = "result";
    out.textContent = "placing…";
    try {
      const saga = await post("/v1/orders", body);
      out.className = "result ok";
      out.textContent = `${saga.status}: ${saga.error ? `${saga.error.code} — ${saga.error.message}` : "no error"}`;
      await Promise.all([this.load(), this.show(saga.saga_id)]);
    } catch (err) {
      out.className = "result err";
      out.textContent = describe(err);
    }
  }
}
