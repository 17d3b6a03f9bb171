// Shared by every page: translations, safe DOM building, the API client with the CSRF
// token, the live WebSocket with reconnection, and the page header.
// Data from the server is only ever put into the page as text (textContent), never as HTML.

import { MESSAGES } from "./i18n.js";

const LANG_KEY = "acd.lang";
export const state = { session: null, tz: undefined };

export function lang() {
  const l = localStorage.getItem(LANG_KEY);
  return l === "en" || l === "ru" ? l : "ru";
}

export function setLang(l) {
  localStorage.setItem(LANG_KEY, l);
  document.documentElement.lang = l;
  applyI18n(document);
  document.dispatchEvent(new CustomEvent("acd:lang"));
}

export function t(key, vars) {
  const table = MESSAGES[lang()] || MESSAGES.ru;
  let s = table[key] ?? MESSAGES.ru[key] ?? key;
  if (vars) for (const [k, v] of Object.entries(vars)) s = s.replaceAll(`{${k}}`, String(v));
  return s;
}

/** `t` for a phrase about a count `n`: the key's plural form for `n` in the page's language
 * ("key#one", "key#few"; Russian: 1 обращение, 2 обращения, 5 обращений), else the key itself
 * (written in the form for "many"). `n` is also passed as {n}. */
export function tn(key, n, vars) {
  const form = new Intl.PluralRules(lang()).select(Number(n));
  const table = MESSAGES[lang()] || MESSAGES.ru;
  const k = table[`${key}#${form}`] !== undefined ? `${key}#${form}` : key;
  return t(k, { n, ...vars });
}

/** A label in the site's languages ({ru:..., en:...}) in the current one. */
export function label(texts, fallback = "") {
  if (!texts) return fallback;
  return texts[lang()] || texts.ru || texts.en || Object.values(texts)[0] || fallback;
}

export function applyI18n(root) {
  for (const node of root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of root.querySelectorAll("[data-i18n-placeholder]")) node.placeholder = t(node.dataset.i18nPlaceholder);
  for (const node of root.querySelectorAll("[data-i18n-title]")) {
    node.title = t(node.dataset.i18nTitle);
    node.setAttribute("aria-label", node.title);
  }
  if (document.body.dataset.titleKey) document.title = t(document.body.dataset.titleKey);
}

/** el("button", {class: "x", onclick: f}, "text", child) — children become text or nodes. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/** A table of class "grid": a header row of column titles (message keys), then `rows`. */
export function gridTable(columns, rows) {
  return el(
    "table",
    { class: "grid" },
    el("thead", {}, el("tr", {}, columns.map((k) => el("th", { scope: "col" }, t(k))))),
    el("tbody", {}, rows),
  );
}

export function clear(node) {
  while (node.firstChild) node.firstChild.remove();
  return node;
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && state.session?.csrf) headers["X-CSRF-Token"] = state.session.csrf;
  const resp = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = resp.headers.get("Content-Type")?.includes("json") ? await resp.json() : await resp.text();
  if (resp.status === 401 && !path.startsWith("/api/auth/login")) {
    toLogin();
    throw new ApiError(401, "unauthenticated", t("err.signin"));
  }
  if (!resp.ok) {
    const err = data?.error || {};
    throw new ApiError(resp.status, err.code || "http", err.message || String(resp.status));
  }
  return data;
}

function toLogin() {
  const next = encodeURIComponent(location.pathname);
  location.assign(`/login?next=${next}`);
}

/** Load the session or go to the sign-in page; check the role if given. */
export async function requireSession(role) {
  const s = await api("GET", "/api/auth/session");
  state.session = s;
  state.tz = s.tz;
  const order = ["manager", "supervisor", "admin"];
  if (role && order.indexOf(s.role) < order.indexOf(role)) {
    location.assign(s.role === "manager" ? "/panel" : "/dashboard");
    throw new Error("wrong page for this role");
  }
  return s;
}

export function fmtTime(ts, withDate = false) {
  if (!ts) return "—";
  const opts = { hour: "2-digit", minute: "2-digit", second: withDate ? undefined : "2-digit", timeZone: state.tz };
  if (withDate) Object.assign(opts, { day: "2-digit", month: "2-digit" });
  return new Intl.DateTimeFormat(lang(), opts).format(new Date(ts * 1000));
}

export function fmtDur(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return t("dur.s", { s });
  const m = Math.floor(s / 60);
  if (m < 60) return t("dur.ms", { m, s: String(s % 60).padStart(2, "0") });
  return t("dur.hm", { h: Math.floor(m / 60), m: String(m % 60).padStart(2, "0") });
}

export function pct(x) {
  return x === null || x === undefined ? "—" : `${Math.round(x * 100)}%`;
}

/** Server time minus browser time, so countdowns and waits agree with the server. */
export const clock = {
  skew: 0,
  sync(serverNow) {
    if (serverNow) this.skew = serverNow - Date.now() / 1000;
  },
  now() {
    return Date.now() / 1000 + this.skew;
  },
};

/** The live feed: one WebSocket, reconnecting with back-off; `onMessage(msg)` per message. */
export class Live {
  constructor(onMessage, onStatus) {
    this.onMessage = onMessage;
    this.onStatus = onStatus || (() => {});
    this.delay = 500;
    this.closed = false;
    this.connect();
  }
  connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}/api/ws`);
    this.ws = ws;
    ws.onopen = () => {
      this.delay = 500;
      this.onStatus(true);
    };
    ws.onmessage = (e) => {
      let msg;
      try {
        msg = JSON.parse(e.data);
      } catch {
        return;
      }
      if (msg.now) clock.sync(msg.now);
      this.onMessage(msg);
    };
    ws.onclose = (e) => {
      this.onStatus(false);
      if (this.closed) return;
      // 4001: the session's lifetime is over (acd/web/live.py); reconnecting would only get 401s
      if (e.code === 4001) return toLogin();
      setTimeout(() => this.connect(), this.delay);
      this.delay = Math.min(this.delay * 2, 15000);
    };
  }
  close() {
    this.closed = true;
    this.ws?.close();
  }
}

/** The header every signed-in page shares: title, who, connection, language, sign-out. */
export function header(titleKey, nav = []) {
  const s = state.session;
  const conn = el("span", { class: "conn", id: "conn", role: "status", "data-i18n": "conn.connecting" });
  const who = el("span", { class: "who" }, s.display_name || s.username || s.role);
  const langBtn = el("button", {
    type: "button",
    class: "ghost",
    id: "lang",
    onclick: () => setLang(lang() === "ru" ? "en" : "ru"),
  });
  const showLang = () => {
    langBtn.textContent = lang() === "ru" ? "English" : "Русский";
  };
  showLang();
  document.addEventListener("acd:lang", showLang);
  const out = el("button", {
    type: "button",
    class: "ghost",
    id: "logout",
    "data-i18n": "logout",
    onclick: async () => {
      try {
        await api("POST", "/api/auth/logout");
      } finally {
        location.assign("/login");
      }
    },
  });
  const links = nav.map(([href, key]) =>
    el("a", { href, "data-i18n": key, "aria-current": location.pathname === href ? "page" : null }),
  );
  const bar = el(
    "header",
    { class: "top" },
    el("div", { class: "brand" }, el("strong", { "data-i18n": titleKey }), el("span", { class: "site" }, s.site)),
    el("nav", { "aria-label": "main" }, links),
    el("div", { class: "right" }, conn, who, langBtn, out),
  );
  document.body.prepend(bar);
  applyI18n(document);
  return {
    connected(ok) {
      conn.dataset.i18n = ok ? "conn.live" : "conn.lost";
      conn.className = ok ? "conn ok" : "conn bad";
      conn.textContent = t(conn.dataset.i18n);
    },
  };
}

export function navFor(role) {
  const nav = [];
  if (role === "supervisor" || role === "admin") nav.push(["/dashboard", "nav.dashboard"]);
  if (role === "admin") nav.push(["/admin", "nav.admin"]);
  return nav;
}

/** A small notice at the bottom of the page, read out by screen readers. */
export function toast(text, kind = "info") {
  let box = document.getElementById("toasts");
  if (!box) {
    box = el("div", { id: "toasts", role: "status", "aria-live": "polite" });
    document.body.append(box);
  }
  const item = el("div", { class: `toast ${kind}` }, text);
  box.append(item);
  setTimeout(() => item.remove(), 6000);
}

export function showError(err) {
  // an Error's own String() starts with its English name ("Error: ..."): the prefix is ours
  toast(err instanceof Error ? `${t("err.prefix")}: ${err.message}` : `${t("err.prefix")}: ${err}`, "bad");
}

document.documentElement.lang = lang();
