// Small SVG charts drawn on the page (no library): stacked bars and a line.
const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Stacked bars: `rows` [{label, values: {series: n}}], `series` [{key, name, color}]. */
export function stackedBars(title, rows, series, { width = 560, height = 200, percent = false } = {}) {
  const pad = { l: 34, r: 8, t: 8, b: 22 };
  const totals = rows.map((r) => series.reduce((s, x) => s + (r.values[x.key] || 0), 0));
  const max = percent ? 1 : Math.max(1, ...totals);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", class: "chart" });
  root.append(svg("title", {}, title));
  const w = (width - pad.l - pad.r) / rows.length;
  const h = height - pad.t - pad.b;
  for (const frac of percent || max >= 4 ? [0, 0.5, 1] : [0, 1]) {
    const y = pad.t + h * (1 - frac);
    root.append(svg("line", { x1: pad.l, x2: width - pad.r, y1: y, y2: y, class: "grid-line" }));
    root.append(svg("text", { x: pad.l - 4, y: y + 4, "text-anchor": "end", class: "axis" },
      percent ? `${Math.round(frac * 100)}%` : String(Math.round(max * frac))));
  }
  rows.forEach((r, i) => {
    let y = pad.t + h;
    for (const s of series) {
      const v = r.values[s.key] || 0;
      if (!v) continue;
      const bh = (v / max) * h;
      y -= bh;
      const rect = svg("rect", { x: pad.l + i * w + 1, y, width: Math.max(1, w - 2), height: bh, fill: s.color });
      rect.append(svg("title", {}, `${r.label}: ${s.name} ${percent ? Math.round(v * 100) + "%" : v}`));
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
  const pad = { l: 34, r: 8, t: 8, b: 22 };
  const all = series.flatMap((s) => s.values.filter((v) => v != null));
  const max = percent ? 1 : Math.max(1, ...all);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", class: "chart" });
  root.append(svg("title", {}, title));
  const w = (width - pad.l - pad.r) / Math.max(1, labels.length);
  const h = height - pad.t - pad.b;
  for (const frac of [0, 0.5, 1]) {
    const y = pad.t + h * (1 - frac);
    root.append(svg("line", { x1: pad.l, x2: width - pad.r, y1: y, y2: y, class: "grid-line" }));
    root.append(svg("text", { x: pad.l - 4, y: y + 4, "text-anchor": "end", class: "axis" },
      percent ? `${Math.round(frac * 100)}%` : String(Math.round(max * frac))));
  }
  labels.forEach((label, i) => {
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
      dot.append(svg("title", {}, `${labels[i]}: ${s.name} ${percent ? Math.round(v * 100) + "%" : v}`));
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
