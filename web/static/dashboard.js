// The supervisor dashboard: the live queue by channel, every manager's state and load, the
// day's numbers and charts, the decision log with its "why", reassign, pause/unpause, export.
import { legend, lines, stackedBars } from "./charts.js";
import {
  api,
  applyI18n,
  clear,
  clock,
  el,
  fmtDur,
  fmtTime,
  gridTable,
  header,
  lang,
  Live,
  navFor,
  pct,
  requireSession,
  showError,
  state,
  t,
  tn,
  toast,
} from "./common.js";

const $ = (id) => document.getElementById(id);
const CHANNELS = ["call", "callback", "web", "email"];
const COLORS = { call: "#2563eb", callback: "#9333ea", web: "#059669", email: "#d97706" };
const PEOPLE = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#be185d", "#4d7c0f"];
const REPORT_EVERY_MS = 30_000;

const session = await requireSession("supervisor");
const bar = header("dash.title", navFor(session.role));
let live = { waiting: [], offered: [], managers: [] };
let report = null;
let decisions = [];
let reassigning = null;

// The report's day: the one the user picked, or else today on the site's clock (in its
// time zone), whatever day that is now: a dashboard left on a wall screen overnight moves
// on to the new day by itself.
let picked = null; // YYYY-MM-DD the user chose; null: today
let reportDay = null; // the day of `report`
let asked = null; // the day last asked for
// The report's period: the day, or the week (Monday to Sunday) or the month that holds it.
let period = "day";

/** Today (YYYY-MM-DD) in the site's time zone, by the server's clock. */
function today() {
  return new Intl.DateTimeFormat("en-CA", { timeZone: state.tz }).format(new Date(clock.now() * 1000));
}

/** The site's calendar day (YYYY-MM-DD) of a moment. */
function dayOf(ts) {
  return new Intl.DateTimeFormat("en-CA", { timeZone: state.tz }).format(new Date(ts * 1000));
}

function dayShown() {
  return picked || today();
}

$("date").value = today();
$("period").value = period;

/** A day (YYYY-MM-DD) as people write it, in the page's language. */
function fmtDay(day) {
  const [y, m, d] = day.split("-").map(Number);
  return new Intl.DateTimeFormat(lang(), { day: "numeric", month: "short", year: "numeric", timeZone: "UTC" }).format(
    new Date(Date.UTC(y, m - 1, d)),
  );
}

/** A day (YYYY-MM-DD) under a chart's bar or point, short: "03.12" in Russian, "12/03" in English. */
function axisDay(day) {
  const [y, m, d] = day.split("-").map(Number);
  return new Intl.DateTimeFormat(lang(), { day: "2-digit", month: "2-digit", timeZone: "UTC" }).format(
    new Date(Date.UTC(y, m - 1, d)),
  );
}

/** A week's or a month's report as people name it ("30 нояб. – 6 дек. 2026 г.", "ноябрь
 * 2026 г."); null for a day's. */
function periodText(r) {
  if (!r || r.period === "day") return null;
  const utc = (day) => {
    const [y, m, d] = day.split("-").map(Number);
    return new Date(Date.UTC(y, m - 1, d));
  };
  if (r.period === "month") {
    return new Intl.DateTimeFormat(lang(), { month: "long", year: "numeric", timeZone: "UTC" }).format(utc(r.first));
  }
  const f = new Intl.DateTimeFormat(lang(), { day: "numeric", month: "short", year: "numeric", timeZone: "UTC" });
  return f.formatRange(utc(r.first), utc(r.last));
}

/** The text for `key`, or `fallback` when there is none (a value the page does not know). */
function known(key, fallback) {
  const text = t(key);
  return text === key ? fallback : text;
}

function reasonText(r) {
  return known(`reason.${r}`, r);
}

/** An escalation step's pool (the policy's English word) in the page's language. */
function poolText(pool) {
  return known(`pool.${pool}`, pool);
}

function kindText(kind) {
  return known(`kind.${kind}`, kind);
}

/** Why a manager was filtered out (the decision log's stable English keys, see the core's
 * Switchboard._reject: a rule, or the manager's presence). */
function filterText(why) {
  const step = /^outside step '(.*)'$/.exec(why);
  if (step) return t("filter.outside_step", { pool: poolText(step[1]) });
  return known(`filter.${why}`, why);
}

function componentText(name) {
  return known(`comp.${name}`, name);
}

function managerName(id) {
  return live.managers.find((m) => m.id === id)?.name || id || "—";
}

// ---- keyboard focus across rebuilds ----------------------------------------------------
// The live tables are rebuilt on every change; remember which row's control had the focus
// (rows are keyed by contact or manager id) and give it back, so the keyboard stays put.

function focusKey(box) {
  const a = document.activeElement;
  if (!a || a === box || !box.contains(a)) return a === box ? { box: true } : null;
  const row = a.closest("tr[data-contact], tr[data-manager]");
  if (!row) return { box: true };
  const sel = row.dataset.contact
    ? `tr[data-contact="${CSS.escape(row.dataset.contact)}"]`
    : `tr[data-manager="${CSS.escape(row.dataset.manager)}"]`;
  const controls = [...row.querySelectorAll("button, a[href]")];
  return { sel, cls: a.className, i: controls.indexOf(a) };
}

function restoreFocus(box, key) {
  if (!key) return;
  const row = key.sel ? box.querySelector(key.sel) : null;
  const controls = row ? [...row.querySelectorAll("button, a[href]")] : [];
  const target = controls.find((c) => c.className === key.cls) || controls[key.i] || controls[0];
  (target || box).focus({ preventScroll: true }); // the row left: the section keeps the focus
}

function keepingFocus(box, draw) {
  const key = focusKey(box);
  draw();
  restoreFocus(box, key);
}

// ---- numbers at the top --------------------------------------------------------------

/** A service-level time as the office set it: "20 с", "5 мин", "4 ч" (else as a wait reads). */
function limitText(seconds) {
  const n = (x) => new Intl.NumberFormat(lang(), { maximumFractionDigits: 1 }).format(x);
  if (seconds >= 3600 && seconds % 3600 === 0) return t("sl.h", { n: n(seconds / 3600) });
  if (seconds >= 60 && seconds % 60 === 0) return t("sl.min", { n: n(seconds / 60) });
  if (seconds < 60) return t("dur.s", { s: n(seconds) });
  return fmtDur(seconds);
}

/** Each channel's service level with the time it counts and its target, as the report was
 * counted (the deployment's `reports.service_level`); `short`: a channel below its target. */
function serviceLevels(r) {
  if (!r?.sl_thresholds) return { lines: [], short: null };
  const targets = r.sl_targets || {};
  const anyTarget = CHANNELS.some((ch) => targets[ch] != null);
  let short = false;
  const lines = CHANNELS.map((ch) => {
    const sl = r.sl_by_channel?.[ch] ?? null;
    const target = targets[ch];
    const below = target != null && sl != null && sl < target;
    short ||= below;
    const text = t("sl.line", { ch: t(`ch.${ch}`), sl: pct(sl), limit: limitText(r.sl_thresholds[ch]) });
    return el(
      "li",
      { class: below ? "warn" : null, dataset: { channel: ch }, title: below ? t("sl.short") : null },
      target == null ? text : `${text} (${t("sl.target", { pct: pct(target) })})`,
    );
  });
  // without targets the tile keeps the classic 80 % of the whole
  return { lines, short: anyTarget ? short : null };
}

function renderKpis() {
  const now = clock.now();
  const longest = Math.max(0, ...live.waiting.map((c) => now - c.arrived_at));
  const staffed = live.managers.filter((m) => ["available", "offered", "busy", "wrap_up"].includes(m.presence));
  // The first three are live; the rest are the report's day. Another day than today: each
  // says which it is.
  // A week or a month: each says which.
  const span = periodText(report);
  const other = !span && reportDay && reportDay !== today() ? fmtDay(reportDay) : null;
  const liveK = (k) => (other || span ? t("kpi.now", { k: t(k) }) : t(k));
  const dayK = (k) =>
    span ? t("kpi.in_range", { k: t(k), range: span }) : other ? t("kpi.on_date", { k: t(k), date: other }) : t(k);
  const levels = serviceLevels(report);
  const slWarn = levels.short ?? report?.service_level < 0.8;
  const slList = levels.lines.length ? el("ul", { class: "kpi-sl" }, levels.lines) : null;
  const items = [
    [liveK("kpi.waiting"), String(live.waiting.length), live.waiting.length ? "warn" : "", "waiting"],
    [liveK("kpi.longest"), live.waiting.length ? fmtDur(longest) : "—", longest > 60 ? "bad" : "", "longest"],
    [liveK("kpi.staffed"), `${staffed.length} / ${live.managers.filter((m) => m.active).length}`, "", "staffed"],
    [dayK("kpi.sl"), pct(report?.service_level), slWarn ? "warn" : "", "sl", slList],
    [dayK("kpi.wait"), report?.average_wait == null ? "—" : fmtDur(report.average_wait), "", "wait"],
    [dayK("kpi.longest_day"), report?.longest_wait == null ? "—" : fmtDur(report.longest_wait), "", "longest_day"],
    [dayK("kpi.abandon"), pct(report?.abandonment), report?.abandonment > 0.1 ? "bad" : "", "abandon"],
    [
      // the label follows the number's plural form (1 обращение, 2 обращения, 5 обращений)
      span
        ? tn("kpi.total.in", report?.total ?? 0, { range: span })
        : other
          ? tn("kpi.total.on", report?.total ?? 0, { date: other })
          : tn("kpi.total", report?.total ?? 0),
      report ? String(report.total) : "—",
      "",
      "total",
    ],
  ];
  clear($("kpis")).append(
    ...items.map(([k, v, cls, name, more]) =>
      el(
        "div",
        { class: `kpi ${cls}`, dataset: { kpi: name } },
        el("span", { class: "kpi-v" }, v),
        el("span", { class: "kpi-k" }, k),
        more,
      ),
    ),
  );
}

// ---- the live queue ------------------------------------------------------------------

function renderQueue() {
  keepingFocus($("queue"), drawQueue);
}

function drawQueue() {
  const now = clock.now();
  const box = clear($("queue"));
  const all = [...live.offered, ...live.waiting];
  if (!all.length) {
    box.append(el("p", { class: "empty" }, t("dash.queue.empty")));
    return;
  }
  for (const ch of CHANNELS) {
    const rows = all.filter((c) => c.channel === ch);
    if (!rows.length) continue;
    box.append(
      el("h3", { class: "queue-ch" }, el("span", { class: `chip ch-${ch}` }, t(`ch.${ch}`)), ` ${rows.length}`),
      el(
        "table",
        { class: "grid" },
        el(
          "thead",
          {},
          el(
            "tr",
            {},
            ["col.client", "col.waits", "col.status", "col.actions"].map((k) => el("th", { scope: "col" }, t(k))),
          ),
        ),
        el(
          "tbody",
          {},
          rows.map((c) =>
            el(
              "tr",
              { dataset: { contact: c.id } },
              el("td", {}, c.name || c.phone || c.email || t("card.noname")),
              el("td", { class: "wait", dataset: { arrived: c.arrived_at } }, fmtDur(now - c.arrived_at)),
              el(
                "td",
                {},
                c.status === "offered" ? t("dash.offered_to", { name: managerName(c.offered_to) }) : t("st.waiting"),
                c.pinned_to ? el("span", { class: "muted" }, ` · ${t("dash.pinned", { name: managerName(c.pinned_to) })}`) : "",
              ),
              el(
                "td",
                {},
                el(
                  "button",
                  { type: "button", class: "reassign", onclick: () => openReassign(c) },
                  t("dash.reassign.short"),
                ),
                " ",
                c.customer_id
                  ? el("button", { type: "button", class: "pin-client", onclick: () => openPin(c) }, t("dash.pinclient.short"))
                  : null,
                " ",
                el("button", { type: "button", class: "link", onclick: () => showWhy(c.id) }, t("dash.why")),
              ),
            ),
          ),
        ),
      ),
    );
  }
}

// ---- managers ------------------------------------------------------------------------

function renderManagers() {
  keepingFocus($("managers"), drawManagers);
}

function drawManagers() {
  const box = clear($("managers"));
  const perf = new Map((report?.managers || []).map((m) => [m.id, m]));
  const rows = live.managers.filter((m) => m.active);
  if (!rows.length) {
    box.append(el("p", { class: "empty" }, t("dash.managers.empty")));
    return;
  }
  box.append(
    gridTable(
      ["col.manager", "col.state", "col.load", "col.today", "col.actions"],
      rows.map((m) => {
          const p = perf.get(m.id);
          const load = Object.entries(m.capacity)
            .filter(([, cap]) => cap)
            .map(([ch, cap]) => `${t(`ch.${ch}`)} ${m.load[ch] || 0}/${cap}`)
            .join(" · ");
          const paused = m.presence === "paused" || m.presence === "offline";
          return el(
            "tr",
            { dataset: { manager: m.id } },
            el("td", {}, m.name || m.id),
            el(
              "td",
              {},
              el("span", { class: "badge", dataset: { state: m.presence } }, t(`pr.${m.presence}`)),
              m.pause_reason ? el("span", { class: "muted" }, ` ${reasonText(m.pause_reason)}`) : "",
              // presence_since is 0 for a manager whose state has not changed since the server
              // started (or who was just created): how long is unknown, not 56 years
              m.presence_since > 0 ? el("span", { class: "muted small" }, ` ${fmtDur(clock.now() - m.presence_since)}`) : "",
            ),
            el("td", { class: "small" }, load),
            el(
              "td",
              { class: "small" },
              t("dash.today", {
                a: m.assigned_today,
                h: m.handled_today,
                // missed: the report's, which is today's unless another day or a period is picked
                miss: (reportDay && reportDay !== today()) || (report && report.period !== "day") ? "—" : p ? p.missed.length : 0,
              }),
            ),
            el(
              "td",
              {},
              el(
                "button",
                {
                  type: "button",
                  class: paused ? "unpause" : "pause",
                  onclick: () => setPresence(m, paused ? "available" : "paused"),
                },
                t(paused ? "dash.unpause" : "dash.pause"),
              ),
            ),
          );
        }),
    ),
  );
}

async function setPresence(m, stateName) {
  try {
    await api("POST", `/api/managers/${encodeURIComponent(m.id)}/presence`, {
      state: stateName,
      reason: stateName === "paused" ? "supervisor" : undefined,
    });
    await refreshLive();
  } catch (err) {
    showError(err);
  }
}

// ---- reassign ------------------------------------------------------------------------

function openReassign(c) {
  reassigning = c;
  $("reassign-who").textContent = `${c.name || c.phone || c.email || t("card.noname")} · ${t(`ch.${c.channel}`)}`;
  const select = clear($("reassign-to"));
  for (const m of live.managers.filter((x) => x.active)) {
    select.append(el("option", { value: m.id }, `${m.name || m.id} — ${t(`pr.${m.presence}`)}`));
  }
  $("reassign-pin").value = "";
  $("reassign-dialog").showModal();
  select.focus();
}

$("reassign-dialog").addEventListener("close", async () => {
  const c = reassigning;
  reassigning = null;
  if (!c || $("reassign-dialog").returnValue !== "ok") return;
  const pin = Number($("reassign-pin").value);
  try {
    await api("POST", `/api/contacts/${encodeURIComponent(c.id)}/reassign`, {
      manager_id: $("reassign-to").value,
      pin_minutes: pin > 0 ? pin : undefined,
    });
    toast(t("dash.reassigned", { name: managerName($("reassign-to").value) }));
    await Promise.all([refreshLive(), refreshDecisions()]);
  } catch (err) {
    showError(err);
  }
});

// ---- pin a client (the customer, not just this contact) -----------------------------------

let pinning = null;

function openPin(c) {
  pinning = c;
  $("pin-who").textContent = c.name || c.phone || c.email || t("card.noname");
  const select = clear($("pin-to"));
  for (const m of live.managers.filter((x) => x.active)) select.append(el("option", { value: m.id }, m.name || m.id));
  select.append(el("option", { value: "" }, t("dash.pinclient.none")));
  $("pin-dialog").showModal();
  select.focus();
}

$("pin-dialog").addEventListener("close", async () => {
  const c = pinning;
  pinning = null;
  if (!c || $("pin-dialog").returnValue !== "ok") return;
  const to = $("pin-to").value || null;
  try {
    await api("POST", `/api/crm/customers/${encodeURIComponent(c.customer_id)}/pin`, { manager_id: to });
    toast(to ? t("dash.pinclient.done", { name: managerName(to) }) : t("dash.pinclient.undone"));
  } catch (err) {
    showError(err);
  }
});

// ---- decisions -----------------------------------------------------------------------

/** The decision in a line, in the page's language, from its fields (the server's English
 * `summary` is the element's title). */
function decisionLine(d) {
  const parts = [];
  const summary = d.summary || "";
  if (d.kind === "offer") {
    // d.step counts from 0; the summary and the admin page's list of steps count from 1
    parts.push(t("dash.d.step", { step: d.step + 1, pool: poolText(d.pool) }));
    const top = d.candidates.find((c) => c.manager_id === d.manager_id) || d.candidates[0];
    if (top) parts.push(t("dash.d.score", { score: top.score.toFixed(3) }));
    const filtered = Object.values(d.filtered_counts || {}).reduce((a, b) => a + b, 0);
    if (filtered) parts.push(t("dash.d.filtered", { n: filtered }));
    if (d.shadow) {
      parts.push(
        d.shadow.manager_id === d.manager_id
          ? t("dash.d.shadow_agrees", { strategy: d.shadow.strategy })
          : t("dash.d.shadow_differs", {
              strategy: d.shadow.strategy,
              name: d.shadow.manager_id ? managerName(d.shadow.manager_id) : t("dash.nobody"),
            }),
      );
    }
  } else if (d.kind === "transfer" && !d.manager_id) {
    const team = /to team (.+)$/.exec(summary);
    if (team) parts.push(t("dash.d.to_team", { team: team[1] }));
  } else if (d.kind === "end") {
    const why = /^ended: (.*)$/s.exec(summary);
    if (why) parts.push(known(`end.${why[1]}`, why[1]));
  }
  return parts;
}

function decisionItem(d, open = false) {
  const chosen = d.manager_id ? managerName(d.manager_id) : t("dash.nobody");
  const filtered = Object.entries(d.filtered_counts || {});
  return el(
    "details",
    { class: "decision", open, dataset: { contact: d.contact_id, decision: d.id } },
    el(
      "summary",
      { title: d.summary || null },
      // the log runs back over earlier days: their entries say which day
      el("span", { class: "muted" }, fmtTime(d.at, dayOf(d.at) !== today())),
      " ",
      el("strong", {}, chosen),
      ` · ${[kindText(d.kind), ...decisionLine(d)].join(" · ")}`,
    ),
    el(
      "div",
      { class: "why" },
      // d.step counts from 0; the summary and the admin page's list of steps count from 1
      el("p", {}, t("dash.why.policy", { strategy: d.strategy, step: d.step + 1, pool: poolText(d.pool), v: d.policy_version })),
      d.candidates.length
        ? el(
            "table",
            { class: "grid small" },
            el(
              "thead",
              {},
              el("tr", {}, el("th", { scope: "col" }, t("col.manager")), el("th", { scope: "col" }, t("dash.score")),
                el("th", { scope: "col" }, t("dash.components"))),
            ),
            el(
              "tbody",
              {},
              d.candidates.map((c) =>
                el(
                  "tr",
                  {},
                  el("td", {}, managerName(c.manager_id)),
                  el("td", {}, c.score.toFixed(3)),
                  el(
                    "td",
                    {},
                    Object.entries(c.components)
                      .map(([k, v]) => `${componentText(k)} ${typeof v === "number" ? v.toFixed(2) : v}`)
                      .join(", "),
                  ),
                ),
              ),
            ),
          )
        : el("p", { class: "muted" }, t("dash.nocandidates")),
      filtered.length
        ? el(
            "ul",
            { class: "filtered" },
            filtered.map(([why, n]) =>
              el(
                "li",
                { dataset: { reason: why } },
                `${filterText(why)}: ${n}`,
                d.filtered[why]?.length ? ` (${d.filtered[why].map(managerName).join(", ")})` : "",
              ),
            ),
          )
        : null,
    ),
  );
}

function renderDecisions() {
  const box = clear($("decisions"));
  if (!decisions.length) {
    box.append(el("p", { class: "empty" }, t("dash.decisions.empty")));
    return;
  }
  box.append(...decisions.map((d) => decisionItem(d)));
}

async function showWhy(contactId) {
  try {
    const rows = (await api("GET", `/api/decisions?contact_id=${encodeURIComponent(contactId)}&limit=20`)).decisions;
    const box = clear($("decisions"));
    box.append(
      el("p", {}, el("button", { type: "button", class: "link", onclick: refreshDecisions }, t("dash.all_decisions"))),
    );
    if (!rows.length) box.append(el("p", { class: "empty" }, t("dash.decisions.none_for")));
    box.append(...rows.map((d, i) => decisionItem(d, i === 0)));
    $("decisions-h").scrollIntoView({ behavior: "smooth" });
  } catch (err) {
    showError(err);
  }
}

// ---- charts and the per-manager table --------------------------------------------------

function renderCharts() {
  const box = clear($("charts"));
  if (!report) return;
  const series = CHANNELS.map((ch) => ({ key: ch, name: t(`ch.${ch}`), color: COLORS[ch] }));
  const hours = report.by_hour.map((r) => ({ label: String(r.hour), values: r }));
  const sl = report.sl_by_hour.map((r) => ({ label: String(r.hour), values: { sl: r.service_level || 0 } }));
  // the chart's days: the seven ending with the day, or the week's or the month's own
  const perDay = report.period !== "day";
  const week = report.week.map((r) => ({ label: axisDay(r.date), values: { n: r.contacts } }));
  const mgr = report.managers.map((m) => ({
    label: (m.name || m.id).split(" ")[0],
    values: { answered: m.answered, missed: m.missed.length },
  }));
  const conv = report.managers.map((m) => ({ label: (m.name || m.id).split(" ")[0], values: { c: m.conversion || 0 } }));
  const fig = (key, ...nodes) => el("figure", {}, el("figcaption", {}, t(key)), ...nodes);
  box.append(
    fig("chart.by_hour", stackedBars(t("chart.by_hour"), hours, series), legend(series)),
    fig("chart.sl", stackedBars(t("chart.sl"), sl, [{ key: "sl", name: t("kpi.sl"), color: "#0891b2" }], { percent: true })),
    fig(
      perDay ? "chart.days" : "chart.week",
      stackedBars(t(perDay ? "chart.days" : "chart.week"), week, [{ key: "n", name: t("col.contacts"), color: "#4f46e5" }]),
    ),
    fig(
      "chart.load",
      stackedBars(t("chart.load"), mgr, [
        { key: "answered", name: t("chart.answered"), color: "#059669" },
        { key: "missed", name: t("chart.missed"), color: "#dc2626" },
      ]),
      legend([
        { name: t("chart.answered"), color: "#059669" },
        { name: t("chart.missed"), color: "#dc2626" },
      ]),
    ),
    fig("chart.conversion", stackedBars(t("chart.conversion"), conv, [{ key: "c", name: t("col.conversion"), color: "#16a34a" }], { percent: true })),
  );
  const days = report.week.map((r) => axisDay(r.date));
  const slWeek = [{ name: t("kpi.sl"), color: "#0891b2", values: report.week.map((r) => r.service_level) }];
  const people = (report.week_managers || []).map((m, i) => ({
    name: m.name || m.id,
    color: PEOPLE[i % PEOPLE.length],
    values: report.week.map((r) => r.conversion?.[m.id] ?? null),
  }));
  box.append(
    fig(perDay ? "chart.days_sl" : "chart.week_sl", lines(t(perDay ? "chart.days_sl" : "chart.week_sl"), days, slWeek, { percent: true })),
    fig(
      perDay ? "chart.days_conversion" : "chart.week_conversion",
      lines(t(perDay ? "chart.days_conversion" : "chart.week_conversion"), days, people, { percent: true }),
      people.length ? legend(people) : el("p", { class: "empty" }, t("chart.week_conversion.empty")),
    ),
  );
}

/** A week's or a month's days, one row each, and its total (the period's own: its service
 * level is not an average of the days'); nothing for a day. */
function renderDays() {
  const box = clear($("days"));
  if (!report || report.period === "day") return;
  const dur = (x) => (x == null ? "—" : fmtDur(x));
  const cells = (r, n) => [n, r.answered, r.abandoned, pct(r.service_level), dur(r.average_wait), dur(r.longest_wait), pct(r.abandonment)];
  const row = (label, values, cls) => el("tr", { class: cls }, [label, ...values].map((v) => el("td", {}, String(v))));
  box.append(
    el("h3", {}, t("dash.days")),
    gridTable(
      ["col.date", "col.contacts", "col.answered", "col.abandoned", "col.sl", "col.wait", "col.longest", "col.abandonment"],
      [
        ...report.week.map((d) => row(fmtDay(d.date), cells(d, d.contacts), "")),
        row(t("days.total"), cells(report, report.total), "total"),
      ],
    ),
  );
}

function renderPerf() {
  const box = clear($("perf"));
  const rows = report?.managers || [];
  const byDay = !report || report.period === "day";
  $("perf-h").dataset.i18n = byDay ? "dash.perf" : `dash.perf.${report.period}`;
  $("perf-h").textContent = t($("perf-h").dataset.i18n);
  if (!rows.length) {
    box.append(el("p", { class: "empty" }, t(byDay ? "dash.perf.empty" : "dash.perf.period_empty")));
    return;
  }
  const at = (ts) => fmtTime(ts, !byDay); // a week's or a month's moments say their day
  const list = (items) =>
    items.length
      ? el("ul", { class: "compact" }, items.map((c) => el("li", {}, `${at(c.arrived_at)} ${t(`ch.${c.channel}`)} ${c.name || ""}`)))
      : "—";
  box.append(
    el(
      "table",
      { class: "grid" },
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          ["col.manager", "col.offered", "col.answered", "col.won", "col.lost", "col.unreached", "col.conversion",
            "col.response", "col.missed", "col.abandoned", "col.pauses"].map((k) =>
            el("th", { scope: "col", title: k === "col.conversion" ? t("col.conversion.hint") : "" }, t(k)),
          ),
        ),
      ),
      el(
        "tbody",
        {},
        rows.map((m) =>
          el(
            "tr",
            {},
            el("td", {}, m.name),
            el("td", {}, m.offered),
            el("td", {}, m.answered),
            el("td", {}, m.won),
            el("td", {}, m.lost),
            el("td", {}, m.unreached),
            el("td", {}, pct(m.conversion)),
            el(
              "td",
              { dataset: { col: "response" } },
              m.response_average == null ? "—" : `${fmtDur(m.response_average)} / ${fmtDur(m.response_longest)}`,
            ),
            el("td", {}, list(m.missed)),
            el("td", {}, list(m.abandoned)),
            el(
              "td",
              {},
              m.pauses.length
                ? el(
                    "ul",
                    { class: "compact" },
                    m.pauses.map((p) => el("li", {}, `${at(p.since)} ${reasonText(p.reason || p.cause)} · ${fmtDur(p.seconds)}`)),
                  )
                : "—",
              m.paused_seconds ? el("div", { class: "muted" }, t("dash.paused_total", { d: fmtDur(m.paused_seconds) })) : "",
            ),
          ),
        ),
      ),
    ),
  );
}

// ---- sales leaders: now (the day, the week) and the trend (the week before) ---------------

/** An amount in the office's currency, as people write it ("300 000" in Russian). */
function money(x) {
  return new Intl.NumberFormat(lang(), { maximumFractionDigits: 0 }).format(x || 0);
}

function wonText(p) {
  const won = p.won ? t("leaders.won", { amount: money(p.amount), n: p.won }) : "—";
  return p.lost ? `${won} (${t("leaders.lost", { n: p.lost })})` : won;
}

function trendText(r) {
  if (r.change == null) return r.week.amount ? `▲ ${t("trend.new")}` : "—";
  const sign = r.change > 0 ? "▲ +" : r.change < 0 ? "▼ −" : "";
  return `${sign}${Math.round(Math.abs(r.change) * 100)}%`;
}

function renderLeaders() {
  const box = clear($("leaders"));
  const rows = report?.leaders || [];
  // a week or a month: its deals and the previous one's (the report's "week" and "previous")
  const p = report && report.period !== "day" ? report.period : null;
  $("leaders-hint").dataset.i18n = p ? `dash.leaders.hint.${p}` : "dash.leaders.hint";
  $("leaders-hint").textContent = t($("leaders-hint").dataset.i18n);
  if (!rows.length) {
    box.append(el("p", { class: "empty" }, t("dash.leaders.empty")));
    return;
  }
  box.append(
    gridTable(
      p
        ? ["col.rank", "col.manager", `col.leaders.this_${p}`, `col.leaders.last_${p}`, "col.trend"]
        : ["col.rank", "col.manager", "col.leaders.day", "col.leaders.week", "col.leaders.previous", "col.trend"],
      rows.map((r, i) =>
        el(
          "tr",
          { dataset: { manager: r.id } },
          el("td", {}, String(i + 1)),
          el("td", {}, r.name || r.id),
          p ? null : el("td", { dataset: { col: "day" } }, wonText(r.day)),
          el("td", { dataset: { col: "week" } }, wonText(r.week)),
          el("td", { dataset: { col: "previous" } }, wonText(r.previous)),
          el(
            "td",
            { dataset: { col: "trend" }, class: r.change < 0 ? "down" : r.change > 0 || r.change == null ? "up" : "" },
            trendText(r),
          ),
        ),
      ),
    ),
  );
  const fig = (key, ...nodes) => el("figure", { dataset: { chart: key } }, el("figcaption", {}, t(key)), ...nodes);
  const short = (r) => (r.name || r.id).split(" ")[0];
  const week = [
    { key: "week", name: t(p ? `col.leaders.this_${p}` : "col.leaders.week"), color: "#16a34a" },
  ];
  const bars = rows.map((r) => ({ label: short(r), values: { week: r.week.amount } }));
  const days = report.week.map((r) => axisDay(r.date));
  const people = rows
    .filter((r) => r.week.amount)
    .map((r, i) => ({
      name: r.name || r.id,
      color: PEOPLE[i % PEOPLE.length],
      values: report.week.map((d) => d.won_amount?.[r.id] || 0),
    }));
  box.append(
    el(
      "div",
      { class: "charts" },
      fig(p ? "chart.leaders_period" : "chart.leaders_week", stackedBars(t(p ? "chart.leaders_period" : "chart.leaders_week"), bars, week)),
      fig(
        "chart.leaders_days",
        lines(t("chart.leaders_days"), days, people),
        people.length ? legend(people) : el("p", { class: "empty" }, t("dash.leaders.empty")),
      ),
    ),
  );
}

// ---- loading ---------------------------------------------------------------------------

async function refreshLive() {
  try {
    live = await api("GET", "/api/queue");
    clock.sync(live.now);
  } catch (err) {
    showError(err);
  }
  renderKpis();
  renderQueue();
  renderManagers();
}

async function refreshReport() {
  const date = dayShown();
  const asking = period;
  asked = date;
  if (!picked && $("date").value !== date && document.activeElement !== $("date")) $("date").value = date;
  exportLinks(date);
  try {
    const got = await api("GET", `/api/reports/day?date=${encodeURIComponent(date)}${periodQuery()}`);
    // another day or period was asked for meanwhile: its answer counts
    if (date !== dayShown() || asking !== period) return;
    report = got;
    reportDay = date;
  } catch (err) {
    showError(err);
  }
  renderKpis();
  renderDays();
  renderCharts();
  renderPerf();
  renderLeaders();
  renderManagers();
}

/** The export links of `date`. A page in Russian offers the CSV for Excel (`excel=1`: ";"
 * between cells and a decimal comma, which Excel with Russian regional settings opens right
 * by a double-click); in English, the plain CSV. */
function exportLinks(date) {
  const excel = lang() === "ru" ? "&excel=1" : "";
  for (const what of ["contacts", "decisions", "managers", "summary"]) {
    const link = $(`export-${what}`);
    link.href = `/api/export/${what}.csv?date=${date}${periodQuery()}${excel}`;
    link.title = t(excel ? "dash.export.excel_hint" : "dash.export.plain_hint");
  }
}

/** The period in a report's or an export's query: none for a day (the API's default). */
function periodQuery() {
  return period === "day" ? "" : `&period=${period}`;
}

async function refreshDecisions() {
  try {
    decisions = (await api("GET", "/api/decisions?limit=30")).decisions;
  } catch (err) {
    showError(err);
  }
  renderDecisions();
}

let pending = null;
function soon() {
  // Changes come in bursts: one refresh for the burst.
  if (pending) return;
  pending = setTimeout(async () => {
    pending = null;
    await Promise.all([refreshLive(), refreshDecisions()]);
  }, 300);
}

new Live(
  (msg) => {
    if (msg.type === "changed") soon();
  },
  (ok) => {
    bar.connected(ok);
    if (ok) soon();
  },
);
$("date").addEventListener("change", () => {
  // today (or an emptied field) is "today", and follows the clock past midnight
  const value = $("date").value;
  picked = value && value !== today() ? value : null;
  if (!picked) $("date").value = today();
  refreshReport();
});
$("period").addEventListener("change", () => {
  period = $("period").value;
  refreshReport();
});
let reportTicks = 0;
setInterval(() => {
  // A week's or a month's report reads up to a month of rows, and its numbers move slowly:
  // every tenth time (5 minutes) is enough for it.
  reportTicks += 1;
  if (period === "day" || reportTicks % 10 === 0) refreshReport();
}, REPORT_EVERY_MS);
setInterval(() => {
  // Only the clocks move: rebuilding the tables would steal the keyboard focus.
  if (!picked && asked !== null && today() !== asked) refreshReport(); // midnight: a new day
  renderKpis();
  const now = clock.now();
  for (const td of document.querySelectorAll("td.wait[data-arrived]")) {
    const waited = now - Number(td.dataset.arrived);
    td.textContent = fmtDur(waited);
    td.classList.toggle("late", waited > 60);
  }
}, 1000);
document.addEventListener("acd:lang", () => {
  exportLinks(dayShown());
  renderKpis();
  renderQueue();
  renderManagers();
  renderDecisions();
  renderDays();
  renderCharts();
  renderPerf();
  renderLeaders();
});
applyI18n(document);
await Promise.all([refreshLive(), refreshReport(), refreshDecisions()]);
