// The manager panel: presence, the pause banner, the offer with its client card and
// countdown, my open contacts. Live over /api/ws; a heartbeat keeps a present manager present.
import { renderCard } from "./card.js";
import {
  Live,
  api,
  applyI18n,
  clear,
  clock,
  el,
  fmtDur,
  fmtTime,
  header,
  navFor,
  requireSession,
  showError,
  t,
  toast,
} from "./common.js";

const HEARTBEAT_MS = 60_000;
const AUTO_REASONS = new Set(["missed offer", "inactive"]);
const $ = (id) => document.getElementById(id);

const session = await requireSession("manager");
const bar = header("panel.title", navFor(session.role));
const mid = session.manager_id;
let me = null;
let offer = null;
let offerArrived = 0; // performance.now() when `offer` came
let ticker = null;

if (!mid) {
  clear($("panel")).append(el("p", { class: "card" }, t("panel.nomanager")));
  throw new Error("not a manager account");
}

// ---- my state ------------------------------------------------------------------------

function showMe(m, asked = Infinity) {
  const loadChanged = JSON.stringify(me?.load) !== JSON.stringify(m.load);
  me = m;
  const badge = $("state");
  badge.dataset.state = m.presence;
  badge.textContent = t(`pr.${m.presence}`);
  const reason = m.presence === "paused" && m.pause_reason ? reasonText(m.pause_reason) : "";
  $("state-reason").textContent = reason ? `(${reason})` : "";
  $("state-since").textContent = m.presence_since ? t("panel.since", { time: fmtTime(m.presence_since) }) : "";
  $("today").textContent = t("panel.today", { a: m.assigned_today, h: m.handled_today });
  const paused = m.presence === "paused";
  $("pause-banner").hidden = !paused;
  if (paused) {
    const auto = AUTO_REASONS.has(m.pause_reason);
    $("pause-banner").classList.toggle("auto", auto);
    $("pause-text").textContent = auto
      ? t(m.pause_reason === "inactive" ? "banner.inactive" : "banner.missed")
      : t("banner.break", { reason });
  }
  // on line (available, or taken up by a contact): the button is pressed, and pressing it
  // again would change nothing
  const onLine = ["available", "offered", "busy", "wrap_up"].includes(m.presence);
  $("go-available").disabled = onLine;
  $("go-available").setAttribute("aria-pressed", String(onLine));
  $("go-break").setAttribute("aria-pressed", String(paused));
  $("go-offline").disabled = m.presence === "offline";
  $("go-offline").setAttribute("aria-pressed", String(m.presence === "offline"));
  // An answer to a request sent before this offer arrived cannot know about it: only
  // newer news (the live feed, a later request) takes the offer away.
  if (offer && m.offer_contact_id !== offer.contact.id && asked >= offerArrived) hideOffer();
  if (loadChanged) refreshMine();
}

function reasonText(r) {
  const key = `reason.${r}`;
  const text = t(key);
  return text === key ? r : text;
}

async function refreshMe() {
  const asked = performance.now();
  try {
    showMe(await api("GET", `/api/managers/${encodeURIComponent(mid)}`), asked);
  } catch (err) {
    showError(err);
  }
}

async function setPresence(state, reason) {
  try {
    const asked = performance.now();
    showMe(await api("POST", `/api/managers/${encodeURIComponent(mid)}/presence`, { state, reason }), asked);
  } catch (err) {
    showError(err);
  }
}

$("go-available").addEventListener("click", () => setPresence("available"));
$("go-break").addEventListener("click", () => setPresence("paused", $("break-reason").value));
$("go-offline").addEventListener("click", () => setPresence("offline"));
$("rejoin").addEventListener("click", async () => {
  try {
    showMe(await api("POST", `/api/managers/${encodeURIComponent(mid)}/rejoin`));
    toast(t("panel.rejoined"));
  } catch (err) {
    showError(err);
  }
});

// ---- client cards (the offer's and the one opened from my contacts) -------------------
// Each card's data is kept with it, so a language switch draws it again in the new language.

const shownCards = new Map();

function showCard(target, card) {
  shownCards.set(target, card);
  renderCard(target, card);
}

// ---- the offer -----------------------------------------------------------------------

async function showOffer(msg) {
  offer = msg;
  offerArrived = performance.now();
  $("offer").hidden = false;
  showCard($("client-card"), { contact: msg.contact, criteria_labels: {}, earlier: [], deals: [] });
  $("offer-announce").textContent = t("panel.offer.announce", { name: msg.contact.name || t("card.noname") });
  $("accept").focus();
  tick();
  clearInterval(ticker);
  ticker = setInterval(tick, 250);
  try {
    const card = await api("GET", `/api/contacts/${encodeURIComponent(msg.contact.id)}/card`);
    if (offer?.contact.id === msg.contact.id) showCard($("client-card"), card);
  } catch (err) {
    if (err.status !== 404) showError(err);
  }
}

function tick() {
  if (!offer) return;
  const left = offer.expires_at - clock.now();
  // the offer's whole time: from when it was made (`offered_at`; a resent offer's `now` is
  // the time of the resend, not of the offer)
  const since = offer.offered_at ?? offer.now ?? offer.expires_at - 30;
  const total = Math.max(1, offer.expires_at - since);
  $("countdown").textContent = fmtDur(Math.max(0, left));
  $("countdown-bar").value = Math.max(0, Math.min(100, (left / total) * 100));
  if (left <= -2) hideOffer();
}

function hideOffer() {
  offer = null;
  clearInterval(ticker);
  $("offer").hidden = true;
}

async function answer(accept) {
  if (!offer) return;
  const id = offer.contact.id;
  hideOffer();
  try {
    if (accept) {
      await api("POST", `/api/contacts/${encodeURIComponent(id)}/accept`);
      toast(t("panel.accepted"));
    } else {
      await api("POST", `/api/contacts/${encodeURIComponent(id)}/decline`, { reason: "declined" });
    }
  } catch (err) {
    showError(err);
  }
  refreshMe();
  refreshMine();
}

$("accept").addEventListener("click", () => answer(true));
$("decline").addEventListener("click", () => answer(false));
document.addEventListener("keydown", (e) => {
  if (!offer || e.ctrlKey || e.metaKey || e.altKey) return;
  if (["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement?.tagName)) return;
  if (e.key === "a" || e.key === "A" || e.key === "ф" || e.key === "Ф") answer(true);
  if (e.key === "d" || e.key === "D" || e.key === "в" || e.key === "В") answer(false);
});

// ---- my contacts ---------------------------------------------------------------------

async function refreshMine() {
  let rows;
  try {
    rows = (await api("GET", "/api/contacts?status=assigned&limit=200")).contacts;
  } catch (err) {
    showError(err);
    return;
  }
  const box = clear($("mine"));
  if (!rows.length) {
    box.append(el("p", { class: "empty" }, t("panel.mine.empty")));
    return;
  }
  const now = clock.now();
  const table = el(
    "table",
    { class: "grid" },
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        ["col.channel", "col.client", "col.contact", "col.since", "col.actions"].map((k) =>
          el("th", { scope: "col" }, t(k)),
        ),
      ),
    ),
    el(
      "tbody",
      {},
      rows.map((c) =>
        el(
          "tr",
          { dataset: { contact: c.id } },
          el("td", {}, el("span", { class: `chip ch-${c.channel}` }, t(`ch.${c.channel}`))),
          el(
            "td",
            {},
            el("button", { type: "button", class: "link", onclick: () => openCard(c.id) }, c.name || t("card.noname")),
          ),
          el(
            "td",
            {},
            c.phone ? el("a", { href: `tel:${c.phone.replace(/[^\d+]/g, "")}`, class: "call" }, c.phone) : null,
            c.phone && c.email ? " · " : "",
            c.email || "",
          ),
          el("td", {}, fmtTime(c.arrived_at, true), el("span", { class: "muted" }, ` (${fmtDur(now - c.arrived_at)})`)),
          el(
            "td",
            { class: "actions" },
            session.telephony && c.phone
              ? el(
                  "button",
                  {
                    type: "button",
                    class: "dial",
                    "aria-label": t("panel.call.label", { name: c.name || c.phone }),
                    onclick: (e) => callContact(c, e.currentTarget),
                  },
                  t("panel.call"),
                )
              : null,
            el(
              "button",
              {
                type: "button",
                class: "transfer",
                "aria-label": t("panel.transfer.label", { name: c.name || c.phone || c.email || t("card.noname") }),
                onclick: () => openTransfer(c),
              },
              t("panel.transfer"),
            ),
            ["done", "won", "lost"].map((o) =>
              el("button", { type: "button", class: `finish ${o}`, onclick: () => finish(c.id, o) }, t(`out.${o}`)),
            ),
          ),
        ),
      ),
    ),
  );
  box.append(table);
}

/** Click-to-call: the PBX rings my phone, then the customer's. */
async function callContact(c, button) {
  button.disabled = true;
  toast(t("panel.calling", { phone: c.phone }));
  try {
    const r = await api("POST", `/api/contacts/${encodeURIComponent(c.id)}/call`);
    toast(r.answered ? t("panel.call.ok") : t("panel.call.noanswer"), r.answered ? "info" : "bad");
  } catch (err) {
    if (err.code === "telephony_off") {
      session.telephony = false;
      toast(t("panel.call.off", { phone: c.phone }), "bad");
      refreshMine();
    } else if (err.code === "no_device") toast(t("panel.call.nodevice"), "bad");
    else if (err.code === "pbx_unavailable") toast(t("panel.call.pbx"), "bad");
    else showError(err);
  } finally {
    button.disabled = false;
  }
}

// ---- transfer: to a colleague (who gets it first) or to a team ---------------------------

let transferring = null;

function openTransfer(c) {
  transferring = c;
  $("transfer-who").textContent = `${c.name || c.phone || c.email || t("card.noname")} · ${t(`ch.${c.channel}`)}`;
  const select = clear($("transfer-to"));
  const lang = document.documentElement.lang;
  select.append(
    el(
      "optgroup",
      { label: t("panel.transfer.colleagues") },
      (session.colleagues || []).map((m) => el("option", { value: `manager:${m.id}` }, m.name)),
    ),
    el(
      "optgroup",
      { label: t("panel.transfer.teams") },
      (session.teams || []).map((tm) => el("option", { value: `team:${tm.id}` }, tm.label[lang] || tm.label.ru || tm.id)),
    ),
  );
  $("transfer-dialog").showModal();
  select.focus();
}

$("transfer-dialog").addEventListener("close", async () => {
  const c = transferring;
  transferring = null;
  if (!c || $("transfer-dialog").returnValue !== "ok") return;
  const [kind, id] = $("transfer-to").value.split(/:(.*)/s);
  const label = $("transfer-to").selectedOptions[0]?.textContent || id;
  try {
    const body = kind === "team" ? { to_team: id } : { to_manager: id };
    await api("POST", `/api/contacts/${encodeURIComponent(c.id)}/transfer`, body);
    toast(t("panel.transferred", { name: label }));
  } catch (err) {
    showError(err);
  }
  if ($("selected").dataset.contact === c.id) $("selected").hidden = true;
  refreshMine();
  refreshMe();
});

async function finish(id, outcome) {
  try {
    await api("POST", `/api/contacts/${encodeURIComponent(id)}/finish`, { outcome });
    toast(t("panel.finished", { outcome: t(`out.${outcome}`) }));
  } catch (err) {
    showError(err);
  }
  if ($("selected").dataset.contact === id) $("selected").hidden = true;
  refreshMine();
  refreshMe();
}

async function openCard(id) {
  try {
    const card = await api("GET", `/api/contacts/${encodeURIComponent(id)}/card`);
    showCard($("selected-card"), card);
    $("selected").hidden = false;
    $("selected").dataset.contact = id;
    $("selected-h").focus?.();
  } catch (err) {
    showError(err);
  }
}

// ---- live ----------------------------------------------------------------------------

new Live(
  (msg) => {
    switch (msg.type) {
      case "me":
        showMe(msg.manager);
        break;
      case "offer":
        showOffer(msg);
        break;
      case "withdrawn":
        if (offer?.contact.id === msg.contact_id) {
          hideOffer();
          toast(t("panel.withdrawn"));
        }
        break;
      case "notice":
        if (msg.kind === "auto_pause") toast(t(msg.text === "inactive" ? "banner.inactive" : "banner.missed"), "bad");
        if (msg.kind === "reassigned_to") toast(t("panel.reassigned_to"));
        if (msg.kind === "reassigned_away") toast(t("panel.reassigned_away"));
        refreshMe();
        refreshMine();
        break;
    }
  },
  (ok) => {
    bar.connected(ok);
    if (ok) {
      refreshMe();
      refreshMine();
    }
  },
);

function heartbeat() {
  if (document.visibilityState !== "visible") return;
  api("POST", `/api/managers/${encodeURIComponent(mid)}/heartbeat`).catch(() => {});
}
setInterval(heartbeat, HEARTBEAT_MS);
document.addEventListener("visibilitychange", heartbeat);
document.addEventListener("acd:lang", () => {
  if (me) showMe(me);
  for (const [target, card] of shownCards) renderCard(target, card);
  refreshMine();
});
applyI18n(document);
heartbeat();
refreshMe();
refreshMine();
