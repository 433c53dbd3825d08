// One WebSocket to /v1/ws: authenticates with the pasted token, (re)subscribes channels after every
// reconnect, and dispatches frames to the handlers by channel name.
import { getToken } from "./api.js";

export class Feed extends EventTarget {
  constructor() {
    super();
    this.handlers = new Map(); // channel -> handler(frame)
    this.ws = null;
    this.ready = false;
    this.retry = 500;
    this.timer = null;
  }

  /** Open (or reopen) the socket with the current token; without one, stay offline. */
  connect() {
    this.close();
    if (!getToken()) { this._status("offline", "no token"); return; }
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/ws`;
    const ws = (this.ws = new WebSocket(url));
    this._status("connecting");
    ws.onopen = () => ws.send(JSON.stringify({ op: "auth", token: getToken() }));
    ws.onmessage = (event) => this._frame(JSON.parse(event.data));
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ready = false;
      if (event.code === 4401) { this._status("offline", "token refused"); return; }
      this._status("reconnecting", event.reason || String(event.code));
      this.timer = setTimeout(() => this.connect(), this.retry);
      this.retry = Math.min(this.retry * 2, 10000);
    };
  }

  close() {
    clearTimeout(this.timer);
    if (this.ws) { const ws = this.ws; this.ws = null; ws.close(); }
    this.ready = false;
  }

  subscribe(channel, handler) {
    this.handlers.set(channel, handler);
    this._send({ op: "subscribe", channel });
  }

  unsubscribe(channel) {
    if (!this.handlers.delete(channel)) return;
    this._send({ op: "unsubscribe", channel });
  }

  /** Drop and re-take a channel: the gateway answers a subscribe with a fresh snapshot. */
  resubscribe(channel) {
    this._send({ op: "unsubscribe", channel });
    this._send({ op: "subscribe", channel });
  }

  _send(frame) {
    if (this.ready) this.ws.send(JSON.stringify(frame));
  }

  _frame(frame) {
    if (frame.type === "authenticated") {
      this.ready = true;
      this.retry = 500;
      this._status("live", frame.account);
      for (const channel of this.handlers.keys()) this._send({ op: "subscribe", channel });
      this.dispatchEvent(new CustomEvent("open"));
      return;
    }
    if (frame.type === "error") this.dispatchEvent(new CustomEvent("error", { detail: frame }));
    if (["subscribed", "unsubscribed", "error", "heartbeat", "pong"].includes(frame.type)) return;
    const handler = frame.channel && this.handlers.get(frame.channel);
    if (handler) handler(frame);
  }

  _status(state, detail = "") {
    this.state = state;
    this.dispatchEvent(new CustomEvent("status", { detail: { state, detail } }));
  }
}
