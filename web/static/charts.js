// Small SVG charts drawn on the page (no library): stacked bars and a line.
import { lang } from "./common.js";

const NS = "http://www.w3.org/2000/svg";

/** An axis number, short and grouped the page's way ("2,8 млн", "12 тыс.", "2.8M"). */
function axisNum(x) {
  return new Intl.NumberFormat(lang(), { notation: "compact", maximumFractionDigits: 1 }).format(x);
}

/** A value in a tooltip, whole, with the thousands grouped ("2 825 000"). */
function fullNum(x) {
  return new Intl.NumberFormat(lang(), { maximumFractionDigits: 2 }).format(x);
}

/** The y axis's labels and the left margin they need (about 6 units a character at 10px). */
function yAxis(fracs, max, percent) {
  const texts = fracs.map((f) => (percent ? `${Math.round(f * 100)}%` : axisNum(Math.round(max * f))));
  return { texts, left: Math.max(34, 8 + 6 * Math.max(...texts.map((x) => x.length))) };
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Stacked bars: `rows` [{label, values: {series: n}}], `series` [{key, name, color}]. */
export function stackedBars(title, rows, series, { width = 560, height = 200, percent = false } = {}) {
  const totals = rows.map((r) => series.reduce((s, x) => s + (r.values[x.key] || 0), 0));
  const max = percent ? 1 : Math.max(1, ...totals);
  const fracs = percent || max >= 4 ? [0, 0.5, 1] : [0, 1];
  const axis = yAxis(fracs, max, percent);
  const pad = { l: axis.left, r: 8, t: 8, b: 22 };
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", class: "chart" });
  root.append(svg("title", {}, title));
  const w = (width - pad.l - pad.r) / rows.length;
  const h = height - pad.t - pad.b;
  fracs.forEach((frac, k) => {
    const y = pad.t + h * (1 - frac);
    root.append(svg("line", { x1: pad.l, x2: width - pad.r, y1: y, y2: y, class: "grid-line" }));
    root.append(svg("text", { x: pad.l - 4, y: y + 4, "text-anchor": "end", class: "axis" }, axis.texts[k]));
  });
  rows.forEach((r, i) => {
    let y = pad.t + h;
    for (const s of series) {
      const v = r.values[s.key] || 0;
      if (!v) continue;
      const bh = (v / max) * h;
      y -= bh;
      const rect = svg("rect", { x: pad.l + i * w + 1, y, width: Math.max(1, w - 2), height: bh, fill: s.color });
      rect.append(svg("title", {}, `${r.label}: ${s.name} ${percent ? Math.round(v * 100) + "%" : fullNum(v)}`));
      root.append(rect);
    }
    if (rows.length <= 12 || i % 3 === 0) {
      root.append(svg("text", { x: pad.l + i * w + w / 2, y: height - 6, "text-anchor": "middle", class: "axis" }, r.label));
    }
  });
  return root;
}

/** Lines over shared `labels`: `series` [{name, color, values: [n | null]}]; a null leaves a gap. */
export function lines(title, labels, series, { width = 560, height = 200, percent = false } = {}) {
  const all = series.flatMap((s) => s.values.filter((v) => v != null));
  const max = percent ? 1 : Math.max(1, ...all);
  const fracs = [0, 0.5, 1];
  const axis = yAxis(fracs, max, percent);
  const pad = { l: axis.left, r: 8, t: 8, b: 22 };
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", class: "chart" });
  root.append(svg("title", {}, title));
  const w = (width - pad.l - pad.r) / Math.max(1, labels.length);
  const h = height - pad.t - pad.b;
  fracs.forEach((frac, k) => {
    const y = pad.t + h * (1 - frac);
    root.append(svg("line", { x1: pad.l, x2: width - pad.r, y1: y, y2: y, class: "grid-line" }));
    root.append(svg("text", { x: pad.l - 4, y: y + 4, "text-anchor": "end", class: "axis" }, axis.texts[k]));
  });
  labels.forEach((label, i) => {
    // a month's days: every third label, as the bars do, so they do not run into each other
    if (labels.length > 12 && i % 3 !== 0) return;
    root.append(svg("text", { x: pad.l + i * w + w / 2, y: height - 6, "text-anchor": "middle", class: "axis" }, label));
  });
  for (const s of series) {
    let run = [];
    const flush = () => {
      if (run.length > 1) root.append(svg("polyline", { points: run.join(" "), fill: "none", stroke: s.color, "stroke-width": 2 }));
      run = [];
    };
    s.values.forEach((v, i) => {
      if (v == null) return flush();
      const x = pad.l + i * w + w / 2;
      const y = pad.t + h * (1 - v / max);
      run.push(`${x},${y}`);
      const dot = svg("circle", { cx: x, cy: y, r: 3.5, fill: s.color });
      dot.append(svg("title", {}, `${labels[i]}: ${s.name} ${percent ? Math.round(v * 100) + "%" : fullNum(v)}`));
      root.append(dot);
    });
    flush();
  }
  return root;
}

export function legend(series) {
  const box = document.createElement("div");
  box.className = "legend";
  for (const s of series) {
    const item = document.createElement("span");
    const sw = document.createElement("i");
    sw.style.background = s.color;
    item.append(sw, document.createTextNode(s.name));
    box.append(item);
  }
  return box;
}
