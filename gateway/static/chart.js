// A small SVG chart: cost as bars (left axis, USD) and tokens as a line (right axis), with a data table
// for screen readers. Drawn with DOM calls only (no HTML parsing), sized by viewBox so it scales.
"use strict";

const SpendChart = (() => {
  const NS = "http://www.w3.org/2000/svg";
  // Drawn at the container's own width (within bounds), so axis text stays readable on a phone.
  const WIDE = { W: 960, H: 280, M: { top: 16, right: 64, bottom: 34, left: 96 } };
  const NARROW = { H: 240, M: { top: 12, right: 36, bottom: 30, left: 70 } };
  const MIN_LABEL_GAP = 52; // px between x-axis labels

  function svg(tag, attrs, text) {
    const n = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, String(v));
    if (text !== undefined) n.textContent = text;
    return n;
  }

  // A "nice" upper bound and step for an axis: 1, 2 or 5 times a power of ten.
  function niceScale(max, ticks = 4) {
    if (!(max > 0)) return { max: 1, step: 0.25 };
    const raw = max / ticks;
    const pow = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * pow).find((s) => s >= raw);
    return { max: step * Math.ceil(max / step - 1e-9), step };
  }

  function render(container, { buckets, title, description, labelEvery = 1, money, compact }) {
    const width = Math.round(container.clientWidth || WIDE.W);
    const W = Math.max(300, Math.min(WIDE.W, width));
    const { H, M } = W < 600 ? NARROW : WIDE;
    const iw = W - M.left - M.right;
    const ih = H - M.top - M.bottom;
    const costMax = niceScale(Math.max(...buckets.map((b) => b.cost + (b.liveCost || 0)), 0));
    const tokMax = niceScale(Math.max(...buckets.map((b) => b.tokens + (b.liveTokens || 0)), 0));
    const n = Math.max(buckets.length, 1);
    const slot = iw / n;
    const every = Math.max(labelEvery, Math.ceil(MIN_LABEL_GAP / slot));
    const barW = Math.max(2, Math.min(36, slot * 0.7));
    const y = (v, s) => M.top + ih - (v / s.max) * ih;

    const root = svg("svg", {
      viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-labelledby": "chart-svg-title chart-svg-desc",
    });
    root.append(svg("title", { id: "chart-svg-title" }, title), svg("desc", { id: "chart-svg-desc" }, description));

    const ticks = Math.round(costMax.max / costMax.step);
    for (let i = 0; i <= ticks; i++) {
      const v = costMax.step * i;
      const yy = y(v, costMax);
      root.append(svg("line", { class: "grid", x1: M.left, x2: W - M.right, y1: yy, y2: yy }));
      root.append(svg("text", { class: "axis", x: M.left - 8, y: yy + 4, "text-anchor": "end" }, money(v)));
      const tv = (tokMax.max / ticks) * i;
      root.append(svg("text", { class: "axis", x: W - M.right + 8, y: yy + 4, "text-anchor": "start" }, compact(Math.round(tv))));
    }

    const points = [];
    buckets.forEach((b, i) => {
      const cx = M.left + slot * i + slot / 2;
      const settledTop = y(b.cost, costMax);
      const g = svg("g", {});
      g.append(svg("title", {}, `${b.title}: ${money(b.cost)}${b.liveCost ? " + " + money(b.liveCost) + " running" : ""}, ${compact(b.tokens)} tokens`));
      if (b.cost > 0) {
        g.append(svg("rect", { class: "bar", x: cx - barW / 2, y: settledTop, width: barW, height: M.top + ih - settledTop, rx: 2 }));
      }
      if (b.liveCost > 0) {
        const top = y(b.cost + b.liveCost, costMax);
        g.append(svg("rect", { class: "bar live", x: cx - barW / 2, y: top, width: barW, height: settledTop - top, rx: 2 }));
      }
      // an invisible full-height target so the tooltip works on empty slots too
      g.append(svg("rect", { x: M.left + slot * i, y: M.top, width: slot, height: ih, fill: "transparent" }));
      root.append(g);
      points.push([cx, y(b.tokens + (b.liveTokens || 0), tokMax)]);
      if (i % every === 0 || (i === buckets.length - 1 && i % every > every / 2)) {
        root.append(svg("text", { class: "axis", x: cx, y: H - M.bottom + 18, "text-anchor": "middle" }, b.label));
      }
    });
    if (points.length) {
      root.append(svg("polyline", { class: "line", points: points.map((p) => p.join(",")).join(" ") }));
      buckets.forEach((b, i) => {
        if (b.tokens + (b.liveTokens || 0) > 0) root.append(svg("circle", { class: "dot", cx: points[i][0], cy: points[i][1], r: 3 }));
      });
    }
    if (M === WIDE.M) {
      // Axis titles where there is room for them; the legend names the two series anyway.
      root.append(svg("text", { class: "axis", x: 14, y: M.top + ih / 2, transform: `rotate(-90 14 ${M.top + ih / 2})`, "text-anchor": "middle" }, "Cost (USD)"));
      root.append(svg("text", { class: "axis", x: W - 12, y: M.top + ih / 2, transform: `rotate(90 ${W - 12} ${M.top + ih / 2})`, "text-anchor": "middle" }, "Tokens"));
    }

    // The same numbers as a table, for screen readers and anyone who wants the figures.
    const rows = buckets.filter((b) => b.cost || b.tokens || b.liveCost);
    const table = document.createElement("table");
    const head = table.createTHead().insertRow();
    for (const h of ["When", "Cost", "Tokens"]) {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = h;
      head.append(th);
    }
    const body = table.createTBody();
    for (const b of rows) {
      const r = body.insertRow();
      r.insertCell().textContent = b.title;
      r.insertCell().textContent = money(b.cost + (b.liveCost || 0));
      r.insertCell().textContent = compact(b.tokens + (b.liveTokens || 0));
    }
    const details = document.createElement("details");
    const summary = document.createElement("summary");
    summary.textContent = rows.length ? "Show the numbers" : "No spend in this period yet";
    details.append(summary, table);
    container.replaceChildren(root, details);
  }

  return { render, niceScale };
})();
