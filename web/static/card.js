// The client card (screen pop): built from the API's /card answer, text only.
import { el, fmtTime, label, t } from "./common.js";

/** A deal's status (open, won, lost) in the page's language; an unknown one as it is. */
function dealStatus(status) {
  const key = `deal.${status}`;
  const text = t(key);
  return text === key ? status || "" : text;
}

export function renderCard(target, card) {
  const c = card.contact;
  const labels = card.criteria_labels || {};
  const answers = Object.entries(c.criteria || {}).map(([name, value]) => {
    const info = labels[name] || {};
    return el(
      "div",
      { class: "kv" },
      el("dt", {}, label(info.label, name)),
      el("dd", {}, label((info.options || {})[value], value)),
    );
  });
  const contactLine = [];
  if (c.phone) contactLine.push(el("a", { href: `tel:${c.phone.replace(/[^\d+]/g, "")}`, class: "call" }, c.phone));
  if (c.email) contactLine.push(el("a", { href: `mailto:${c.email}` }, c.email));
  const earlier = card.earlier || [];
  const target_ = target;
  target_.replaceChildren(
    ...[
    el(
      "div",
      { class: "card-head" },
      el("h3", { class: "client-name" }, c.name || t("card.noname")),
      el("span", { class: `chip ch-${c.channel}` }, t(`ch.${c.channel}`)),
    ),
    el("p", { class: "contact-line" }, ...contactLine.flatMap((n, i) => (i ? [" · ", n] : [n]))),
    answers.length ? el("dl", { class: "answers" }, answers) : null,
    c.note ? el("p", { class: "note" }, el("strong", {}, `${t("card.note")}: `), c.note) : null,
    el("h4", {}, t("card.earlier")),
    earlier.length
      ? el(
          "ul",
          { class: "history" },
          earlier.map((e) =>
            el(
              "li",
              {},
              `${fmtTime(e.arrived_at, true)} · ${t(`ch.${e.channel}`)} · ${t(`st.${e.status}`)}`,
              e.outcome ? ` · ${t(`out.${e.outcome}`)}` : "",
              e.assigned_to ? ` · ${e.assigned_to_name || e.assigned_to}` : "",
              e.note ? el("span", { class: "muted" }, ` — ${e.note}`) : null,
            ),
          ),
        )
      : el("p", { class: "muted" }, t("card.first")),
    el("h4", {}, t("card.deals")),
    card.deals?.length
      ? el(
          "ul",
          {},
          card.deals.map((d) =>
            el(
              "li",
              {},
              `${d.title || d.id} — ${label(d.stage_label, d.stage || "")} · ${dealStatus(d.status)}`,
              d.owner ? ` · ${d.owner_name || d.owner}` : "",
            ),
          ),
        )
      : el("p", { class: "muted" }, t("card.nodeals")),
    ].filter(Boolean),
  );
}
