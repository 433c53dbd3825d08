// Small DOM helpers: build rows without innerHTML (every value is text, never markup).

export const $ = (selector, root = document) => root.querySelector(selector);

/** An element with attributes and children (strings become text nodes). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replace a tbody's rows; an empty list shows one muted "none" row. */
export function rows(tbody, list, empty = "none") {
  const cols = tbody.closest("table").querySelectorAll("thead th").length || 1;
  tbody.replaceChildren(...(list.length ? list : [el("tr", { class: "empty" }, el("td", { colspan: cols }, empty))]));
}

export function toast(text, kind = "info") {
  const box = $("#toast");
  box.textContent = text;
  box.className = `show ${kind}`;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.className = ""; }, 4000);
}

export const time = (ms) => (ms ? new Date(ms).toISOString().slice(11, 19) : "");
export const timeNs = (ns) => (ns ? new Date(Number(BigInt(ns) / 1000000n)).toISOString().slice(11, 23) : "");
export const short = (id, n = 10) => (id && id.length > n + 1 ? id.slice(0, n) + "…" : id || "");
