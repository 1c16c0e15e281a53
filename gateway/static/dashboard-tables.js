// The dashboard's tables: spend by model and by provider, and the recent streams (running ones first), each
// named by the model that answered it, with its segments. Drawn with DOM calls only.
"use strict";

const DashboardTables = (() => {
  const { el, money, count, compact } = Gateway;
  const $ = (id) => document.getElementById(id);
  const RECENT_SHOW = 15;

  function shareBar(part, whole) {
    const bar = el("span", { class: "share", "aria-hidden": "true" });
    bar.style.width = (whole > 0 ? Math.max(2, (part / whole) * 60) : 0).toFixed(1) + "px";
    return bar;
  }

  // Input tokens read from and written to the provider's prompt cache (each priced at its own rate).
  function cacheCell(t) {
    return el("td", { class: "num cache", "data-label": "Cache read / written" }, `${compact(t.cache_read)} / ${compact(t.cache_write)}`);
  }

  // The by-model and by-provider tables of the range's usage.
  function renderTotals(u) {
    if (!u) return;
    const whole = u.by_model.reduce((s, m) => s + m.cost, 0);
    $("by-model").replaceChildren(
      ...(u.by_model.length
        ? u.by_model.map((m) =>
            el("tr", { "data-model": m.model },
              el("th", { scope: "row" }, shareBar(m.cost, whole), m.model),
              el("td", { "data-label": "Provider" }, m.provider),
              el("td", { class: "num", "data-label": "Streams" }, count(m.streams)),
              el("td", { class: "num", "data-label": "Tokens in / out" }, `${compact(m.input_tokens)} / ${compact(m.output_tokens)}`),
              cacheCell(m),
              el("td", { class: "num", "data-label": "Cost" }, money(m.cost)))
          )
        : [el("tr", {}, el("td", { colspan: 6, class: "hint" }, "No spend in this range yet."))])
    );
    const pw = u.by_provider.reduce((s, p) => s + p.cost, 0);
    $("by-provider").replaceChildren(
      ...(u.by_provider.length
        ? u.by_provider.map((p) =>
            el("tr", { "data-provider": p.provider },
              el("th", { scope: "row" }, shareBar(p.cost, pw), p.provider),
              el("td", { class: "num", "data-label": "Streams" }, count(p.streams)),
              el("td", { class: "num", "data-label": "Tokens in / out" }, `${compact(p.input_tokens)} / ${compact(p.output_tokens)}`),
              cacheCell(p),
              el("td", { class: "num", "data-label": "Cost" }, money(p.cost)))
          )
        : [el("tr", {}, el("td", { colspan: 5, class: "hint" }, "No spend in this range yet."))])
    );
  }

  function segmentChips(segs) {
    const box = el("span", { class: "segments" });
    segs.forEach((s, i) => {
      if (i) box.append(el("span", { class: "seg-arrow", "aria-label": "fell back to" }, "→"));
      const ok = s.status === "ok";
      box.append(
        el("span", {
          class: "seg", "data-status": s.status,
          title: `${s.provider}/${s.model}: ${s.status}${s.reason ? " (" + s.reason + ")" : ""}, ${money(s.cost_usd)}${s.estimated ? " estimated" : ""}`,
        }, s.model + (ok ? " ✓" : s.status === "cancelled" ? "" : " ✕ " + (s.reason || s.status)))
      );
    });
    return box;
  }

  // Running streams first (their last tick), then the most recent finished ones.
  function renderRecent(running, recent, allUsers) {
    const rows = [];
    for (const [id, r] of running) {
      rows.push(
        el("tr", { class: "running-row", "data-stream-id": id, "data-running": "true" },
          el("td", { "data-label": "Time" }, "now"),
          el("td", { "data-label": "Answered by" }, r.model),
          el("td", { "data-label": "Segments" }, "streaming…"),
          el("td", { class: "num", "data-label": "Tokens in / out" }, `– / ${compact(r.tokens)}`),
          el("td", { class: "num", "data-label": "Cost" }, money(r.cost) + " (est.)"),
          el("td", { "data-label": "Status" }, el("span", { class: "status" }, "running")))
      );
    }
    for (const r of recent.slice(0, RECENT_SHOW)) {
      rows.push(
        el("tr", { "data-stream-id": r.stream_id, "data-user-id": r.user_id || "" },
          el("td", { "data-label": "Time", title: r.started_at + (allUsers && r.user_id ? " · user " + r.user_id : "") }, new Date(r.started_at).toLocaleTimeString("en-GB")),
          el("td", { "data-label": "Answered by", title: r.requested_model !== answeredBy(r) ? "asked for " + r.requested_model : null }, answeredBy(r)),
          el("td", { "data-label": "Segments" }, segmentChips(r.segments || [])),
          el("td", { class: "num", "data-label": "Tokens in / out" }, `${compact(r.input_tokens)} / ${compact(r.output_tokens)}`),
          el("td", { class: "num", "data-label": "Cost" }, money(r.cost_usd) + (r.estimated ? " (est.)" : "")),
          el("td", { "data-label": "Status" }, el("span", { class: "status", "data-status": r.status }, r.status)))
      );
    }
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 6, class: "hint" }, "No streams yet: chat on the chat page and watch them arrive.")));
    $("recent").replaceChildren(...rows);
  }

  // The model that answered a stream: the last one tried (a running stream's ticks name the same one).
  function answeredBy(r) {
    const segs = r.segments || [];
    return segs.length ? segs[segs.length - 1].model : r.requested_model;
  }

  return { renderTotals, renderRecent };
})();
