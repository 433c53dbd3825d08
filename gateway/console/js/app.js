// The console: pages behind tabs (#market, #trade, ...), one WebSocket, the pasted token in sessionStorage.
import { claims, get, getToken, setToken } from "./api.js";
import { $ } from "./dom.js";
import { Feed } from "./feed.js";
import { Market } from "./market.js";
import { Sagas } from "./sagas.js";
import { Services } from "./services.js";
import { Trade } from "./trade.js";
import { Wallet } from "./wallet.js";

const PAGES = ["market", "trade", "sagas", "wallet", "services"];

async function main() {
  const feed = new Feed();
  const { instruments } = await get("/v1/markets");
  const market = new Market(feed, instruments);
  const trade = new Trade(feed, instruments);
  const sagas = new Sagas(instruments);
  const wallet = new Wallet();
  const services = new Services();
  const onShow = { trade: () => trade.start(), sagas: () => sagas.load(), wallet: () => wallet.start(),
    services: () => services.load() };
  window.qt = { feed, market, trade, sagas, wallet, services }; // for the browser tests and the devtools console

  feed.addEventListener("status", (e) => {
    const live = $("#live");
    live.textContent = e.detail.state;
    live.className = `pill ${e.detail.state === "live" ? "ok" : "warn"}`;
    live.title = e.detail.detail;
  });

  const signIn = () => {
    const who = claims();
    $("#whoami").textContent = who ? `${who.sub} · ${who.role}` : getToken() ? "unreadable token" : "not signed in";
    if (who) document.body.dataset.role = who.role;
    else delete document.body.dataset.role;
    feed.connect();
    trade.start();
  };
  $("#token").value = getToken();
  $("#session").addEventListener("submit", (e) => { e.preventDefault(); setToken($("#token").value); signIn(); });
  $("#logout").addEventListener("click", () => { setToken(""); $("#token").value = ""; signIn(); });

  const show = () => {
    const page = PAGES.includes(location.hash.slice(1)) ? location.hash.slice(1) : "market";
    for (const name of PAGES) {
      $(`#page-${name}`).hidden = name !== page;
      $(`#tab-${name}`).setAttribute("aria-selected", String(name === page));
    }
    onShow[page]?.();
  };
  window.addEventListener("hashchange", show);
  // Arrow keys move between tabs (the WAI-ARIA tabs pattern); Tab and Enter work as on any link.
  $(".tabs").addEventListener("keydown", (e) => {
    const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
    if (!step) return;
    const at = PAGES.indexOf(location.hash.slice(1) || "market");
    const next = PAGES[(at + step + PAGES.length) % PAGES.length];
    location.hash = next;
    $(`#tab-${next}`).focus();
  });
  signIn();
  await market.select(instruments[0].instrument);
  show();
  document.body.dataset.ready = "true";
}

main().catch((err) => {
  document.body.dataset.ready = "error";
  $("#toast").textContent = `console failed to start: ${err.message || err}`;
  $("#toast").className = "show err";
});
