// The public /v1 HTTP API: JSON in, JSON out; errors are problem+json and thrown as ApiError.

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    this.code = problem.code || `http_${status}`;
  }

  /** "code: detail" as the API said it, for showing to a person. */
  describe() {
    const p = this.problem;
    let text = `${this.status} ${this.code}: ${p.detail || p.title || ""}`;
    if (Array.isArray(p.errors)) text += " — " + p.errors.map((e) => `${e.loc}: ${e.msg}`).join("; ");
    return text;
  }
}

let token = sessionStorage.getItem("qt.token") || "";

export function getToken() { return token; }

export function setToken(value) {
  token = (value || "").trim();
  if (token) sessionStorage.setItem("qt.token", token);
  else sessionStorage.removeItem("qt.token");
}

/** The token's claims (sub = account, role), read for display only: the gateway verifies it. */
export function claims() {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
  } catch {
    return null;
  }
}

/** A fresh Idempotency-Key (every POST/DELETE needs one; a retry of the same action reuses it). */
export function newKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return "console-" + [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export async function request(method, path, { body, key, query } = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["Idempotency-Key"] = key || newKey();
  let url = path;
  if (query) {
    const q = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== undefined && v !== null && v !== ""));
    if ([...q].length) url += "?" + q;
  }
  const response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { detail: text }; }
  if (!response.ok) throw new ApiError(response.status, data || {});
  return data;
}

export const get = (path, query) => request("GET", path, { query });
export const post = (path, body, key) => request("POST", path, { body: body ?? {}, key });
export const del = (path, query) => request("DELETE", path, { query });
