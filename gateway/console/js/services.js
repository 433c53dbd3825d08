// Services page (ops): every micro service instance with its endpoint stats and breakers; streams with their
// consumers' lag; leases; DLQ with replay.
import { get, post } from "./api.js";
import { $, el, rows, short, toast } from "./dom.js";
import { describe } from "./trade.js";

export class Services {
  constructor() {
    $("#svc-refresh").addEventListener("click", () => this.load());
  }

  async load() {
    const out = $("#svc-result");
    out.textContent = "";
    try {
      const [svc, dlq, js] = await Promise.all([get("/v1/services"), get("/v1/ops/dlq", { limit: 100 }),
        get("/v1/ops/streams")]);
      const lines = [];
      const breakers = [];
      for (const s of svc.services) {
        for (const e of s.endpoints) {
          lines.push(el("tr", { dataset: { service: s.name } }, el("td", {}, s.name),
            el("td", { title: s.id }, short(s.id, 8)), el("td", {}, e.name), el("td", {}, e.num_requests),
            el("td", { class: e.num_errors ? "down" : "" }, e.num_errors),
            el("td", {}, ((e.average_processing_time || 0) / 1e6).toFixed(2)), el("td", {}, e.last_error || "")));
        }
        for (const [dep, b] of Object.entries(s.breakers)) {
          breakers.push(el("tr", {}, el("td", {}, s.name), el("td", { title: s.id }, short(s.id, 8)), el("td", {}, dep),
            el("td", { class: b.state === "closed" ? "up" : "down" }, b.state), el("td", {}, b.failures ?? ""),
            el("td", {}, b.opened_count ?? "")));
        }
      }
      rows($("#services tbody"), lines, "no services answered");
      rows($("#breakers tbody"), breakers, "no breakers");
      const consumers = [];
      for (const st of js.streams) {
        const list = st.consumers.length ? st.consumers : [null];
        for (const c of list) {
          consumers.push(el("tr", { dataset: { stream: st.name, consumer: c ? c.name : "" } }, el("td", {}, st.name),
            el("td", {}, st.messages), el("td", {}, st.last_seq), el("td", {}, c ? c.name : "—"),
            el("td", { class: c && c.pending ? "down" : "" }, c ? c.pending : ""), el("td", {}, c ? c.ack_pending : ""),
            el("td", {}, c ? c.redelivered : "")));
        }
      }
      rows($("#consumers tbody"), consumers, "no streams");
      rows($("#leases tbody"), js.leases.map((l) => el("tr", { dataset: { lease: l.key } }, el("td", {}, l.key),
        el("td", { title: l.owner }, short(l.owner, 8)), el("td", {}, l.host), el("td", {}, l.pid ?? ""),
        el("td", {}, l.token))), "no leases held");
      $("#dlq-total").textContent = `${dlq.total} parked`;
      rows($("#dlq tbody"), dlq.entries.map((d) => el("tr", { dataset: { seq: d.seq } }, el("td", {}, d.seq),
        el("td", {}, d.time), el("td", {}, d.service), el("td", {}, `${d.origin_stream}#${d.origin_seq}`),
        el("td", {}, d.deliveries), el("td", {}, d.last_error),
        el("td", {}, el("button", { type: "button", "aria-label": `Replay dead letter ${d.seq}`,
          onclick: () => this.replay(d.seq) }, "Replay")))), "no dead letters");
    } catch (err) {
      out.className = "result err";
      out.textContent = describe(err);
    }
  }

  async replay(seq) {
    try {
      await post(`/v1/ops/dlq/${seq}/replay`, {});
      toast(`replayed ${seq}`, "ok");
    } catch (err) {
      toast(describe(err), "err");
    }
    await this.load();
  }
}
