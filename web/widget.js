/* ACD website widget: a "call me back" button and an embeddable lead form.
 *
 *   <script src="https://acd.example.com/widget.js" data-lang="ru" defer></script>
 *   <div data-acd-form></div>          <!-- optional: an inline lead form here -->
 *
 * data-lang       ru | en (default: the page's <html lang>, else the site's first language)
 * data-button     "false" to leave out the floating callback button
 * data-position   right (default) | left
 *
 * The questions come from the server's configuration (GET /api/public/form). A callback
 * request posts to /api/callbacks when the server's telephony is on (the PBX calls the
 * visitor back at the chosen time, in the site's time zone), else it becomes a lead on the
 * "callback" channel (/api/leads); the form posts a lead. Both accept only the origins listed
 * in web.allowed_origins.
 * Everything renders inside a shadow root, so the site's CSS and ours stay apart.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.__acdWidget) return;
  window.__acdWidget = true;
  var base = new URL(script.src, location.href).origin;
  var opts = script.dataset;

  var TEXT = {
    ru: {
      button: "Перезвоните мне",
      callback: "Заказать обратный звонок",
      form: "Оставить заявку",
      name: "Ваше имя",
      phone: "Телефон",
      email: "E-mail",
      email_updates: "E-mail для уведомлений о звонке",
      when: "Когда позвонить",
      asap: "Как можно скорее",
      at: "В указанное время",
      time: "Удобное время",
      note: "Комментарий",
      send: "Отправить",
      close: "Закрыть",
      sending: "Отправляем…",
      thanks_callback: "Спасибо! Мы перезвоним вам",
      thanks_form: "Спасибо! Заявка принята, менеджер свяжется с вами в ближайшее время.",
      soon: "в ближайшее время.",
      at_time: "в {time}.",
      at_date: "{date} в {time}.",
      who_manager: "Вам позвонит {name}.",
      who_team: "Вам позвонят из подразделения «{team}».",
      need_phone: "Укажите телефон.",
      need_contact: "Укажите телефон или e-mail.",
      too_many: "Слишком много заявок с вашего адреса. Попробуйте через минуту.",
      failed: "Не удалось отправить. Проверьте поля и попробуйте ещё раз.",
      offline: "Нет связи с сервером. Попробуйте ещё раз.",
      choose: "— выберите —",
      note_callback: "Обратный звонок: {when}",
    },
    en: {
      button: "Call me back",
      callback: "Request a call back",
      form: "Send a request",
      name: "Your name",
      phone: "Phone",
      email: "E-mail",
      email_updates: "E-mail for updates about your call",
      when: "When to call",
      asap: "As soon as possible",
      at: "At a given time",
      time: "Preferred time",
      note: "Comment",
      send: "Send",
      close: "Close",
      sending: "Sending…",
      thanks_callback: "Thank you! We will call you back",
      thanks_form: "Thank you! We have your request; a manager will contact you shortly.",
      soon: "shortly.",
      at_time: "at {time}.",
      at_date: "on {date} at {time}.",
      who_manager: "{name} will call you.",
      who_team: "Someone from {team} will call you.",
      need_phone: "Please give your phone number.",
      need_contact: "Please give a phone number or an e-mail.",
      too_many: "Too many requests from your address. Please try again in a minute.",
      failed: "Could not send. Please check the fields and try again.",
      offline: "The server cannot be reached. Please try again.",
      choose: "— choose —",
      note_callback: "Call back: {when}",
    },
  };

  var CSS =
    ":host{all:initial;font:15px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1f2937}" +
    ".fab{position:fixed;bottom:20px;z-index:2147483000;border:0;border-radius:28px;padding:14px 20px;" +
    "background:#16a34a;color:#fff;font:600 15px system-ui,sans-serif;box-shadow:0 4px 14px rgba(0,0,0,.25);cursor:pointer}" +
    ".fab:focus-visible,button:focus-visible,input:focus-visible,select:focus-visible,textarea:focus-visible{outline:3px solid #f59e0b;outline-offset:2px}" +
    ".right{right:20px}.left{left:20px}" +
    ".panel{box-sizing:border-box;position:fixed;bottom:84px;z-index:2147483001;width:min(360px,calc(100vw - 40px));max-height:calc(100vh - 120px);overflow:auto;" +
    "background:#fff;border-radius:12px;box-shadow:0 10px 30px rgba(0,0,0,.3);padding:16px}" +
    ".inline{background:#fff;border:1px solid #d1d5db;border-radius:12px;padding:16px;max-width:480px}" +
    "h2{font-size:18px;margin:0 0 12px}label{display:block;margin:0 0 10px;font-size:14px}" +
    "input,select,textarea{display:block;box-sizing:border-box;width:100%;margin-top:4px;padding:8px 10px;border:1px solid #9ca3af;border-radius:6px;font:inherit;background:#fff;color:#111}" +
    "textarea{min-height:60px}.send{width:100%;border:0;border-radius:6px;padding:10px;background:#2563eb;color:#fff;font:600 15px system-ui,sans-serif;cursor:pointer}" +
    ".send[disabled]{opacity:.6}.x{float:right;border:0;background:none;font-size:22px;line-height:1;cursor:pointer;color:#6b7280}" +
    ".err{color:#b91c1c;margin:0 0 10px}.ok{color:#166534;font-weight:600}" +
    ".hp{position:absolute!important;left:-10000px!important;width:1px;height:1px;overflow:hidden}" +
    ".radios label{display:inline-flex;gap:6px;align-items:center;margin-right:12px}.radios input{width:auto;display:inline;margin:0}";

  function t(lang, key, vars) {
    var s = (TEXT[lang] || TEXT.ru)[key] || key;
    if (vars) Object.keys(vars).forEach(function (k) { s = s.split("{" + k + "}").join(vars[k]); });
    return s;
  }

  function el(tag, attrs) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      var v = attrs[k];
      if (v === undefined || v === null || v === false) return;
      if (k === "text") node.textContent = v;
      else if (k.slice(0, 2) === "on") node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    });
    var children = Array.prototype.slice.call(arguments, 2).flat();
    children.forEach(function (c) {
      if (c === null || c === undefined || c === false) return;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    });
    return node;
  }

  function pick(texts, lang) {
    return (texts && (texts[lang] || texts.ru || texts.en)) || "";
  }

  function shadowFor(host) {
    var root = host.attachShadow({ mode: "open" });
    try {
      var sheet = new CSSStyleSheet();
      sheet.replaceSync(CSS);
      root.adoptedStyleSheets = [sheet]; // not subject to the host page's style-src
    } catch (e) {
      root.append(el("style", { text: CSS }));
    }
    return root;
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  /** The parts of a moment's wall-clock time in the site's time zone. */
  function partsIn(tz, d) {
    var o = {};
    new Intl.DateTimeFormat("en-GB", {
      timeZone: tz, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit",
    }).formatToParts(d).forEach(function (p) { if (p.type !== "literal") o[p.type] = +p.value; });
    return o;
  }

  /** "HH:MM" in the site's time zone → the next such moment as ISO 8601 with the zone's offset. */
  function nextAt(hhmm, tz) {
    var now = new Date();
    var p;
    try { p = partsIn(tz, now); } catch (e) { p = partsIn(undefined, now); }
    var offset = Math.round((Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second) - now.getTime()) / 60000);
    var hm = hhmm.split(":").map(Number);
    var at = Date.UTC(p.year, p.month - 1, p.day, hm[0], hm[1]);
    if (hm[0] * 60 + hm[1] <= p.hour * 60 + p.minute) at += 86400000; // passed today: tomorrow
    var a = Math.abs(offset);
    return new Date(at).toISOString().slice(0, 16) + ":00" + (offset < 0 ? "-" : "+") + pad((a / 60) | 0) + ":" + pad(a % 60);
  }

  /** When the server says the call will come, in the site's time zone. */
  function whenText(lang, ts, tz) {
    if (!ts || ts * 1000 - Date.now() < 120000) return t(lang, "soon");
    var d = new Date(ts * 1000);
    var zone = tz;
    try { new Intl.DateTimeFormat(lang, { timeZone: zone }); } catch (e) { zone = undefined; }
    var time = new Intl.DateTimeFormat(lang, { timeZone: zone, hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).format(d);
    var day = function (x) { return new Intl.DateTimeFormat("en-GB", { timeZone: zone, dateStyle: "short" }).format(x); };
    if (day(d) === day(new Date())) return t(lang, "at_time", { time: time });
    var date = new Intl.DateTimeFormat(lang, { timeZone: zone, day: "numeric", month: "long" }).format(d);
    return t(lang, "at_date", { date: date, time: time });
  }

  /** Who will call, only as the server says it (a manager's name or a team's label). */
  function whoText(lang, who) {
    if (!who) return "";
    if (who.manager) return " " + t(lang, "who_manager", { name: String(who.manager) });
    if (who.team) return " " + t(lang, "who_team", { team: pick(who.team, lang) });
    return "";
  }

  var seq = 0;
  function uid() {
    return (crypto.randomUUID && crypto.randomUUID()) || String(Date.now()) + Math.random().toString(16).slice(2);
  }

  /** A lead form; `kind` is "callback" (phone and time) or "web" (a request). */
  function buildForm(config, lang, kind, onClose) {
    var id = "acd" + ++seq;
    var key = uid(); // one lead per form, however often it is submitted
    var err = el("p", { class: "err", id: id + "x", role: "alert", hidden: true });
    var name = el("input", { name: "name", id: id + "n", autocomplete: "name", maxlength: 200 });
    var phone = el("input", { name: "phone", id: id + "p", type: "tel", autocomplete: "tel", maxlength: 40, required: kind === "callback" });
    var email = el("input", { name: "email", id: id + "e", type: "email", autocomplete: "email", maxlength: 200 });
    var note = el("textarea", { name: "note", id: id + "c", maxlength: 2000 });
    var hp = el("input", { name: config.honeypot || "website", tabindex: "-1", autocomplete: "off" });
    var whenAsap = el("input", { type: "radio", name: id + "w", value: "asap", checked: true });
    var whenAt = el("input", { type: "radio", name: id + "w", value: "at" });
    var time = el("input", { type: "time", id: id + "t", name: "time" });
    var selects = config.criteria.map(function (c) {
      var s = el("select", { name: c.name, id: id + "q" + c.name }, el("option", { value: "", text: t(lang, "choose") }));
      c.options.forEach(function (o) { s.append(el("option", { value: o.value, text: pick(o.label, lang) || o.value })); });
      return el("label", { for: id + "q" + c.name }, pick(c.label, lang) || c.name, s);
    });
    var send = el("button", { type: "submit", class: "send", text: t(lang, "send") });
    var title = el("h2", { id: id + "h", text: t(lang, kind === "callback" ? "callback" : "form") });
    var form = el(
      "form",
      { novalidate: true, "aria-labelledby": id + "h" },
      onClose ? el("button", { type: "button", class: "x", "aria-label": t(lang, "close"), text: "×", onclick: onClose }) : null,
      title,
      err,
      el("label", { for: id + "n" }, t(lang, "name"), name),
      el("label", { for: id + "p" }, t(lang, "phone"), phone),
      kind === "web" || config.callback_email ? el("label", { for: id + "e" }, t(lang, kind === "web" ? "email" : "email_updates"), email) : null,
      kind === "callback"
        ? el(
            "fieldset",
            { class: "radios" },
            el("legend", { text: t(lang, "when") }),
            el("label", {}, whenAsap, t(lang, "asap")),
            el("label", {}, whenAt, t(lang, "at")),
            el("label", { for: id + "t" }, t(lang, "time"), time)
          )
        : null,
      selects,
      kind === "web" ? el("label", { for: id + "c" }, t(lang, "note"), note) : null,
      el("div", { class: "hp", "aria-hidden": "true" }, el("label", {}, "Website", hp)),
      send
    );
    time.addEventListener("input", function () { whenAt.checked = true; });

    var busy = false; // a double submit sends one request
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      if (busy) return;
      err.hidden = true;
      phone.removeAttribute("aria-invalid");
      phone.removeAttribute("aria-describedby");
      var p = phone.value.trim();
      var m = email.value.trim();
      if (kind === "callback" && !p) return fail(t(lang, "need_phone"), phone);
      if (kind === "web" && !p && !m) return fail(t(lang, "need_contact"), phone);
      var when = whenAt.checked && time.value ? time.value : null;
      var body = { name: name.value.trim(), phone: p, channel: kind, language: lang, criteria: {} };
      if (m) body.email = m;
      config.criteria.forEach(function (c) {
        var v = form.querySelector("select[name='" + c.name + "']").value;
        if (v) body.criteria[c.name] = v;
      });
      var text = note.value.trim();
      if (kind === "callback") text = t(lang, "note_callback", { when: when || t(lang, "asap") });
      if (text) body.note = text;
      var url = base + "/api/leads";
      if (kind === "callback" && config.callbacks) {
        // the PBX calls back: phone, name, answers, and the time in the site's time zone
        url = base + "/api/callbacks";
        body = { name: body.name, phone: p, language: lang, criteria: body.criteria };
        if (m) body.email = m;
        if (when) body.after = nextAt(when, config.tz);
      }
      if (hp.value) body[config.honeypot || "website"] = hp.value;
      busy = true;
      send.disabled = true;
      send.textContent = t(lang, "sending");
      fetch(url, {
        method: "POST",
        mode: "cors",
        credentials: "omit",
        headers: { "Content-Type": "application/json", "Idempotency-Key": key },
        body: JSON.stringify(body),
      })
        .then(function (resp) {
          if (resp.status === 429) throw new Error(t(lang, "too_many"));
          if (!resp.ok) throw new Error(t(lang, "failed"));
          return resp.json().catch(function () { return {}; });
        })
        .then(function (answer) {
          var done;
          if (kind !== "callback") done = t(lang, "thanks_form");
          else if (config.callbacks) done = t(lang, "thanks_callback") + " " + whenText(lang, answer.not_before, config.tz) + whoText(lang, answer.who);
          else done = t(lang, "thanks_callback") + " " + (when ? t(lang, "at_time", { time: when }) : t(lang, "soon"));
          form.replaceChildren(
            onClose ? el("button", { type: "button", class: "x", "aria-label": t(lang, "close"), text: "×", onclick: onClose }) : "",
            el("p", { class: "ok", role: "status", tabindex: "-1", text: done })
          );
          form.querySelector(".ok").focus();
        })
        .catch(function (e2) {
          busy = false;
          send.disabled = false;
          send.textContent = t(lang, "send");
          fail(e2 instanceof TypeError ? t(lang, "offline") : e2.message);
        });
    });

    function fail(message, field) {
      err.textContent = message;
      err.hidden = false;
      if (field) {
        // a screen reader says which field is wrong and why when it lands there
        field.setAttribute("aria-invalid", "true");
        field.setAttribute("aria-describedby", err.id);
        field.focus();
      }
    }
    return form;
  }

  function start(config) {
    var lang = opts.lang || (document.documentElement.lang || "").slice(0, 2);
    if (!TEXT[lang] || config.languages.indexOf(lang) < 0) lang = config.languages[0] || "ru";

    document.querySelectorAll("[data-acd-form]").forEach(function (host) {
      var root = shadowFor(host);
      root.append(el("div", { class: "inline" }, buildForm(config, lang, host.dataset.acdForm === "callback" ? "callback" : "web")));
    });

    if (opts.button === "false") return;
    var host = el("div", { "data-acd-widget": "" });
    document.body.append(host);
    var root = shadowFor(host);
    var side = opts.position === "left" ? "left" : "right";
    var panel = null;
    var fab = el("button", { type: "button", class: "fab " + side, "aria-expanded": "false", text: t(lang, "button") });
    function close() {
      if (!panel) return;
      panel.remove();
      panel = null;
      fab.setAttribute("aria-expanded", "false");
      fab.focus();
    }
    fab.addEventListener("click", function () {
      if (panel) return close();
      panel = el("div", { class: "panel " + side, role: "dialog", "aria-modal": "false" }, buildForm(config, lang, "callback", close));
      panel.addEventListener("keydown", function (e) { if (e.key === "Escape") close(); });
      root.append(panel);
      fab.setAttribute("aria-expanded", "true");
      var first = panel.querySelector("input:not([tabindex='-1'])");
      if (first) first.focus();
    });
    root.append(fab);
  }

  function load() {
    fetch(base + "/api/public/form", { mode: "cors", credentials: "omit" })
      .then(function (r) {
        if (!r.ok) throw new Error("form " + r.status);
        return r.json();
      })
      .then(start)
      .catch(function (e) {
        if (window.console) console.warn("ACD widget:", e);
      });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", load);
  else load();
})();
