import { api, applyI18n, lang, setLang, state, t } from "./common.js";

const form = document.getElementById("login");
const error = document.getElementById("login-error");
const langBtn = document.getElementById("lang");

function showLang() {
  langBtn.textContent = lang() === "ru" ? "English" : "Русский";
}
langBtn.addEventListener("click", () => setLang(lang() === "ru" ? "en" : "ru"));
document.addEventListener("acd:lang", showLang);
showLang();
applyI18n(document);

function landing(role) {
  const next = new URLSearchParams(location.search).get("next");
  // a page of this site only: "/\evil.example" and "/\t/evil.example" start with one "/",
  // but the browser reads them as "//evil.example", another site
  let url = null;
  try {
    url = next && next.startsWith("/") ? new URL(next, location.origin) : null;
  } catch {
    url = null;
  }
  if (url && url.origin === location.origin) return url.pathname + url.search + url.hash;
  return { manager: "/panel", supervisor: "/dashboard", admin: "/dashboard" }[role] || "/panel";
}

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  error.hidden = true;
  const body = { username: form.username.value.trim(), password: form.password.value };
  if (!body.username || !body.password) {
    error.textContent = t("login.fill");
    error.hidden = false;
    return;
  }
  try {
    const who = await api("POST", "/api/auth/login", body);
    state.session = who;
    location.assign(landing(who.role));
  } catch (err) {
    error.textContent = err.status === 401 ? t("login.wrong") : err.status === 429 ? t("err.toomany") : err.message;
    error.hidden = false;
    form.password.select();
  }
});
