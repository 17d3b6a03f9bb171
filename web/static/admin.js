// Admin pages: managers (through /api/managers), sign-in accounts, the configuration read-only.
import { api, applyI18n, clear, el, header, label, navFor, requireSession, showError, t, toast } from "./common.js";

const $ = (id) => document.getElementById(id);
const session = await requireSession("admin");
const bar = header("admin.title", navFor(session.role));
bar.connected(true);
let managers = [];
let config = null;
let editing = null;

const pairs = (obj) => Object.entries(obj || {}).map(([k, v]) => `${k}=${v}`).join(", ");
function parsePairs(text, field) {
  const out = {};
  for (const part of text.split(",").map((s) => s.trim()).filter(Boolean)) {
    const [k, v] = part.split("=").map((s) => s.trim());
    if (!k || !/^\d+$/.test(v || "")) throw new Error(t("admin.bad_pairs", { field, part }));
    out[k] = Number(v);
  }
  return out;
}

function renderManagers() {
  const box = clear($("managers"));
  box.append(
    el(
      "table",
      { class: "grid" },
      el("thead", {}, el("tr", {}, ["admin.id", "admin.name", "admin.team", "admin.skills", "admin.languages",
        "admin.capacity", "admin.active", "col.actions"].map((k) => el("th", { scope: "col" }, t(k))))),
      el(
        "tbody",
        {},
        managers.map((m) =>
          el(
            "tr",
            {},
            el("td", {}, m.id),
            el("td", {}, m.name),
            el("td", {}, m.team ? label(config?.teams?.[m.team], m.team) : "—"),
            el("td", {}, pairs(m.skills)),
            el("td", {}, m.languages.join(", ")),
            el("td", {}, pairs(m.capacity)),
            el("td", {}, m.active ? "✓" : "—"),
            el("td", {}, el("button", { type: "button", onclick: () => edit(m) }, t("admin.edit"))),
          ),
        ),
      ),
    ),
  );
  const select = clear($("account-form").manager_id);
  select.append(el("option", { value: "" }, "—"), ...managers.map((m) => el("option", { value: m.id }, `${m.name} (${m.id})`)));
}

function edit(m) {
  editing = m.id;
  const f = $("manager-form");
  f.mid.value = m.id;
  f.mid.readOnly = true;
  f.mname.value = m.name;
  f.team.value = m.team || "";
  f.skills.value = pairs(m.skills);
  f.languages.value = m.languages.join(", ");
  f.capacity.value = pairs(m.capacity);
  f.device.value = m.device;
  f.email.value = m.email;
  f.active.checked = m.active;
  $("manager-form-h").textContent = t("admin.manager.edit", { id: m.id });
  f.mname.focus();
}

$("manager-form").addEventListener("reset", () => {
  editing = null;
  $("manager-form").mid.readOnly = false;
  $("manager-form-h").textContent = t("admin.manager.new");
});

$("manager-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = e.target;
  try {
    const body = {
      name: f.mname.value.trim(),
      team: f.team.value || null,
      skills: parsePairs(f.skills.value, t("admin.skills")),
      languages: f.languages.value.split(",").map((s) => s.trim()).filter(Boolean),
      capacity: parsePairs(f.capacity.value, t("admin.capacity")),
      device: f.device.value.trim(),
      email: f.email.value.trim(),
      active: f.active.checked,
    };
    if (editing) await api("PATCH", `/api/managers/${encodeURIComponent(editing)}`, body);
    else await api("POST", "/api/managers", { id: f.mid.value.trim(), ...body });
    toast(t("saved"));
    f.reset();
    await load();
  } catch (err) {
    showError(err);
  }
});

async function renderAccounts() {
  const rows = (await api("GET", "/api/accounts")).accounts;
  const box = clear($("accounts"));
  box.append(
    el(
      "table",
      { class: "grid" },
      el("thead", {}, el("tr", {}, ["login.username", "admin.role", "admin.manager", "admin.name", "col.actions"].map((k) =>
        el("th", { scope: "col" }, t(k))))),
      el(
        "tbody",
        {},
        rows.map((a) =>
          el(
            "tr",
            { class: a.disabled ? "disabled" : "" },
            el("td", {}, a.username),
            el("td", {}, t(`role.${a.role}`)),
            el("td", {}, a.manager_id || "—"),
            el("td", {}, a.display_name),
            el(
              "td",
              {},
              el("button", { type: "button", onclick: () => toggle(a) }, t(a.disabled ? "admin.enable" : "admin.disable")),
              " ",
              el("button", { type: "button", onclick: () => resetPassword(a) }, t("admin.reset")),
            ),
          ),
        ),
      ),
    ),
  );
}

async function toggle(a) {
  try {
    await api("PATCH", `/api/accounts/${encodeURIComponent(a.username)}`, { disabled: !a.disabled });
    await renderAccounts();
  } catch (err) {
    showError(err);
  }
}

async function resetPassword(a) {
  const password = prompt(t("admin.reset.prompt", { user: a.username }));
  if (!password) return;
  try {
    await api("PATCH", `/api/accounts/${encodeURIComponent(a.username)}`, { password });
    toast(t("saved"));
  } catch (err) {
    showError(err);
  }
}

$("account-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = e.target;
  try {
    await api("POST", "/api/accounts", {
      username: f.username.value.trim(),
      password: f.password.value,
      role: f.role.value,
      manager_id: f.manager_id.value || null,
      display_name: f.display_name.value.trim(),
    });
    toast(t("saved"));
    f.reset();
    await renderAccounts();
  } catch (err) {
    showError(err);
  }
});

/** A routing step's time: the last step has none (the contact stays there, whatever the file says). */
function stepTimeout(seconds) {
  return seconds === null || seconds === undefined ? t("admin.step.nolimit") : t("dur.s", { s: seconds });
}

function renderConfig() {
  const c = config;
  const box = clear($("config"));
  box.append(
    el("p", { class: "ok" }, t("admin.config.valid", { v: c.policy_version, strategy: c.strategy })),
    el("dl", { class: "answers" },
      el("div", { class: "kv" }, el("dt", {}, t("admin.site")), el("dd", {}, c.site)),
      el("div", { class: "kv" }, el("dt", {}, t("admin.tz")), el("dd", {}, c.tz)),
      el("div", { class: "kv" }, el("dt", {}, t("admin.languages")), el("dd", {}, c.languages.join(", ")))),
    el("h3", {}, t("admin.criteria")),
    el("ul", {}, c.criteria.map((cr) =>
      el("li", {}, el("strong", {}, label(cr.label, cr.name)), ` (${cr.name}): `,
        cr.options.map((o) => `${o.key} → ${label(o.label, o.value)}`).join("; "),
        cr.default ? ` · ${t("admin.default")}: ${cr.default}` : ""))),
    el("h3", {}, t("admin.steps")),
    el("ol", {}, c.steps.map((s, i) =>
      el("li", {}, `${s.pool} · ${stepTimeout(i === c.steps.length - 1 ? null : s.timeout)} · ${s.skip_when}`))),
    el("h3", {}, t("admin.teams")),
    el("p", {}, Object.entries(c.teams).map(([k, v]) => `${label(v, k)} (${k})`).join(", ")),
    el("h3", {}, t("admin.skills.known")),
    el("p", {}, Object.entries(c.skills).map(([k, v]) => `${label(v, k)} (${k})`).join(", ")),
  );
  const team = clear($("manager-form").team);
  team.append(el("option", { value: "" }, "—"), ...Object.entries(c.teams).map(([k, v]) => el("option", { value: k }, label(v, k))));
}

$("reload").addEventListener("click", async () => {
  try {
    const r = await api("POST", "/api/config/reload");
    toast(t("admin.reloaded", { v: r.policy_version }));
    await load();
  } catch (err) {
    showError(err);
  }
});

async function load() {
  try {
    config = await api("GET", "/api/config");
    managers = (await api("GET", "/api/managers")).managers;
    renderConfig();
    renderManagers();
    await renderAccounts();
  } catch (err) {
    showError(err);
  }
}

document.addEventListener("acd:lang", load);
applyI18n(document);
await load();
