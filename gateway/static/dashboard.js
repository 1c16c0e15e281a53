// The spend dashboard: totals, a live chart of cost and tokens, per-model and per-provider breakdowns,
// recent streams with their segments, and the budget; updated from GET /v1/usage/stream as streams run.
"use strict";

(() => {
  const { money, count, compact } = Gateway;
  const $ = (id) => document.getElementById(id);
  const HOUR_BUCKETS = 60;
  const RECENT_KEEP = 200;
  const STALE_RUNNING_MS = 120000;

  const state = {
    usage: null, // GET /v1/usage, numbers parsed
    recent: [], // newest first
    known: new Set(), // stream ids already counted
    running: new Map(), // stream id -> last tick
    loading: false,
    buffered: [],
  };
  let source = null; // EventSource or AbortController of the live feed
  let attempts = 0;
  let generation = 0;

  // -- numbers --------------------------------------------------------------------------------

  const num = (v) => (v === null || v === undefined ? null : Number(v));
  // Cache reads and writes are part of input_tokens, counted apart because they are priced apart.
  const totalsOf = (t) => ({
    streams: t.streams, segments: t.segments, input_tokens: t.input_tokens, output_tokens: t.output_tokens,
    cache_read: t.cached_input_tokens || 0, cache_write: t.cache_write_input_tokens || 0, cost: Number(t.cost_usd),
  });
  const emptyTotals = () => totalsOf({ streams: 0, segments: 0, input_tokens: 0, output_tokens: 0, cost_usd: "0" });

  function isoDay(d) {
    return d.toISOString().slice(0, 10);
  }

  // A service-role token may read everyone's spend: the "All users" switch appears for it.
  function allUsers() {
    return !$("all-users-field").hidden && $("all-users").checked;
  }

  function scope(prefix) {
    return allUsers() ? prefix + "user_id=all" : "";
  }

  function rangeDays() {
    return parseInt($("range").value, 10) || 7;
  }

  function normalize(u) {
    return {
      from: u.from,
      to: u.to,
      totals: totalsOf(u.totals),
      by_day: u.by_day.map((d) => Object.assign({ day: d.day }, totalsOf(d))),
      by_model: u.by_model.map((m) => Object.assign({ model: m.model, provider: m.provider }, totalsOf(m))),
      by_provider: u.by_provider.map((p) => Object.assign({ provider: p.provider }, totalsOf(p))),
      budget: u.budget && {
        daily: num(u.budget.daily_usd),
        monthly: num(u.budget.monthly_usd),
        today: Number(u.budget.spent_today_usd),
        month: Number(u.budget.spent_month_usd),
      },
    };
  }

  // Adds one stream or segment (`x`: its tokens as the events name them) to a total.
  function addTo(t, streams, segments, x, cost) {
    t.streams += streams;
    t.segments += segments;
    t.input_tokens += x.input_tokens;
    t.output_tokens += x.output_tokens;
    t.cache_read += x.cached_input_tokens || 0;
    t.cache_write += x.cache_write_input_tokens || 0;
    t.cost += cost;
  }

  // -- loading and live updates ------------------------------------------------------------------

  async function load() {
    const mine = ++generation;
    state.loading = true;
    const to = isoDay(new Date());
    const from = isoDay(new Date(Date.now() - (rangeDays() - 1) * 86400000));
    try {
      // Totals and recent streams in one answer, from one state: a stream is either in both or in neither,
      // so the live event for it is counted exactly once.
      const usage = await Gateway.api(`/v1/usage?from=${from}&to=${to}&recent=${RECENT_KEEP}${scope("&")}`);
      if (mine !== generation) return;
      state.usage = normalize(usage);
      state.recent = usage.recent;
      state.known = new Set(usage.recent.map((r) => r.stream_id));
      $("notice").hidden = true;
    } catch (e) {
      if (mine !== generation) return;
      $("notice").textContent = e.status === 401 ? "Sign in to see your spend." : "Could not load usage: " + e.message;
      $("notice").hidden = false;
    } finally {
      if (mine === generation) {
        state.loading = false;
        const pending = state.buffered.splice(0);
        for (const ev of pending) onEvent(ev);
        render();
      }
    }
  }

  function onEvent(ev) {
    if (state.loading) {
      state.buffered.push(ev); // applied once the reload settles, so nothing is counted twice
      return;
    }
    if (ev.type === "spend.tick") {
      state.running.set(ev.stream_id, { model: ev.model, cost: Number(ev.cost_usd), tokens: ev.output_tokens, seen: Date.now() });
      renderRunning();
      renderChart();
      return;
    }
    if (ev.type !== "spend.stream") return;
    state.running.delete(ev.stream_id);
    if (state.known.has(ev.stream_id)) return;
    state.known.add(ev.stream_id);
    state.recent.unshift(ev);
    state.recent.length = Math.min(state.recent.length, RECENT_KEEP);
    const u = state.usage;
    if (u) {
      const cost = Number(ev.cost_usd);
      const day = ev.started_at.slice(0, 10);
      const segs = ev.segments || [];
      if (day >= u.from && day <= u.to) {
        addTo(u.totals, 1, segs.length, ev, cost);
        const d = u.by_day.find((x) => x.day === day);
        if (d) addTo(d, 1, segs.length, ev, cost);
        const seenModels = new Set();
        const seenProviders = new Set();
        for (const s of segs) {
          let m = u.by_model.find((x) => x.model === s.model && x.provider === s.provider);
          if (!m) u.by_model.push((m = Object.assign({ model: s.model, provider: s.provider }, emptyTotals())));
          addTo(m, seenModels.has(s.model) ? 0 : 1, 1, s, Number(s.cost_usd));
          seenModels.add(s.model);
          let p = u.by_provider.find((x) => x.provider === s.provider);
          if (!p) u.by_provider.push((p = Object.assign({ provider: s.provider }, emptyTotals())));
          addTo(p, seenProviders.has(s.provider) ? 0 : 1, 1, s, Number(s.cost_usd));
          seenProviders.add(s.provider);
        }
        u.by_model.sort((a, b) => b.cost - a.cost);
        u.by_provider.sort((a, b) => b.cost - a.cost);
      }
      if (u.budget) {
        const now = new Date();
        if (day === isoDay(now)) u.budget.today += cost;
        if (day.slice(0, 7) === isoDay(now).slice(0, 7)) u.budget.month += cost;
      }
    }
    render();
    for (const id of ["c-cost", "c-tokens", "c-streams"]) {
      const card = $(id).parentElement;
      card.classList.remove("flash");
      void card.offsetWidth; // restart the animation
      card.classList.add("flash");
    }
  }

  function setLive(stateName, text) {
    $("live").dataset.state = stateName;
    $("live").textContent = text;
  }

  function stopLive() {
    if (source instanceof EventSource) source.close();
    else if (source) source.abort();
    source = null;
  }

  async function retryLive() {
    stopLive();
    setLive("reconnecting", "Reconnecting…");
    await Gateway.sleep(Gateway.backoff(attempts++));
    goLive();
  }

  async function goLive() {
    stopLive();
    if (!Gateway.token()) {
      setLive("signed-out", "Not signed in");
      return;
    }
    setLive("connecting", "Connecting…");
    let ticket;
    try {
      ticket = await Gateway.ticket();
    } catch (e) {
      if (e.status === 401 || e.status === 403) return setLive("signed-out", "Sign-in refused");
      return retryLive();
    }
    const opened = () => {
      attempts = 0;
      setLive("live", "Live");
      load(); // catch up on whatever happened while the feed was down
    };
    if (ticket) {
      const es = new EventSource("/v1/usage/stream?ticket=" + encodeURIComponent(ticket) + scope("&"));
      source = es;
      es.onopen = opened;
      for (const name of ["spend.tick", "spend.stream"]) es.addEventListener(name, (m) => onEvent(JSON.parse(m.data)));
      // Tickets are single use, so the browser's own retry would fail: reconnect with a new one.
      es.onerror = () => {
        if (source === es) retryLive();
      };
      return;
    }
    // A gateway without tickets: the same feed over fetch with the header.
    const ctrl = new AbortController();
    source = ctrl;
    try {
      const resp = await Gateway.authFetch("/v1/usage/stream" + scope("?"), { signal: ctrl.signal });
      opened();
      await Gateway.readEvents(resp.body, (_n, data) => onEvent(data));
    } catch (e) {
      if (e instanceof Gateway.ApiError && (e.status === 401 || e.status === 403)) return setLive("signed-out", "Sign-in refused");
      /* dropped: reconnect below */
    }
    if (source === ctrl) retryLive();
  }

  // -- rendering ----------------------------------------------------------------------------------

  function render() {
    renderCards();
    renderRunning();
    renderChart();
    DashboardTables.renderTotals(state.usage);
    DashboardTables.renderRecent(state.running, state.recent, allUsers());
  }

  function renderCards() {
    const u = state.usage;
    if (!u) return;
    const t = u.totals;
    const days = rangeDays();
    $("c-cost").textContent = money(t.cost);
    $("c-cost-sub").textContent = days === 1 ? "today (UTC)" : `last ${days} days`;
    $("c-tokens").textContent = compact(t.input_tokens + t.output_tokens);
    $("c-tokens-sub").textContent = `${count(t.input_tokens)} in · ${count(t.output_tokens)} out`;
    $("c-cache").textContent = `prompt cache: ${count(t.cache_read)} read · ${count(t.cache_write)} written`;
    $("c-streams").textContent = count(t.streams);
    const extra = Math.max(0, t.segments - t.streams);
    $("c-streams-sub").textContent = extra ? `${count(extra)} fallback${extra > 1 ? "s or retries" : " or retry"}` : "no fallbacks";
    const b = u.budget;
    const meter = $("c-budget-meter");
    const caps = b ? [b.daily !== null ? [b.daily, b.today, "daily"] : null, b.monthly !== null ? [b.monthly, b.month, "monthly"] : null].filter(Boolean) : [];
    if (!caps.length) {
      $("c-budget").textContent = "No cap";
      $("c-budget-sub").textContent = b ? `${money(b.today)} today · ${money(b.month)} this month` : "";
      meter.hidden = true;
      return;
    }
    const [cap, spent, kind] = caps.reduce((best, c) => (c[0] - c[1] < best[0] - best[1] ? c : best));
    const left = Math.max(0, cap - spent);
    const used = cap > 0 ? Math.min(1, spent / cap) : 1;
    $("c-budget").textContent = money(left);
    $("c-budget-sub").textContent = `of ${money(cap)} ${kind} cap · ${Math.round(used * 100)}% used`;
    meter.hidden = false;
    meter.dataset.level = used >= 0.9 ? "bad" : used >= 0.75 ? "warn" : "ok";
    meter.firstElementChild.style.width = (used * 100).toFixed(1) + "%";
    meter.setAttribute("role", "meter");
    meter.setAttribute("aria-label", `${kind} budget used`);
    meter.setAttribute("aria-valuemin", "0");
    meter.setAttribute("aria-valuemax", String(cap));
    meter.setAttribute("aria-valuenow", String(spent));
  }

  function pruneRunning() {
    const now = Date.now();
    for (const [id, r] of state.running) if (now - r.seen > STALE_RUNNING_MS) state.running.delete(id);
  }

  function renderRunning() {
    pruneRunning();
    let cost = 0;
    for (const r of state.running.values()) cost += r.cost;
    $("c-running").textContent = state.running.size ? money(cost) : "Idle";
    $("c-running-sub").textContent = state.running.size
      ? `${state.running.size} stream${state.running.size > 1 ? "s" : ""} running (estimated)`
      : "no stream running";
    DashboardTables.renderRecent(state.running, state.recent, allUsers());
  }

  function renderChart() {
    const scale = document.querySelector('input[name="scale"]:checked').value;
    const box = $("chart");
    if (scale === "days") {
      const u = state.usage;
      const days = u ? u.by_day : [];
      const buckets = days.map((d) => {
        const dt = new Date(d.day + "T00:00:00Z");
        return {
          label: dt.toLocaleDateString("en-US", { month: "short", day: "numeric", timeZone: "UTC" }),
          title: d.day,
          cost: d.cost,
          tokens: d.input_tokens + d.output_tokens,
        };
      });
      const total = u ? u.totals.cost : 0;
      SpendChart.render(box, {
        buckets, money, compact, labelEvery: Math.max(1, Math.ceil(buckets.length / 10)),
        title: "Cost and tokens by day, " + rangeName().toLowerCase(),
        description: `${money(total)} over ${buckets.length} days, ${count(u ? u.totals.streams : 0)} streams.`,
      });
      return;
    }
    const minute = 60000;
    const end = Math.floor(Date.now() / minute) * minute;
    const start = end - (HOUR_BUCKETS - 1) * minute;
    const buckets = [];
    for (let i = 0; i < HOUR_BUCKETS; i++) {
      const t = new Date(start + i * minute);
      const label = t.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });
      buckets.push({ label, title: label, cost: 0, tokens: 0, liveCost: 0, liveTokens: 0 });
    }
    let streams = 0;
    for (const r of state.recent) {
      const t = Date.parse(r.ended_at);
      if (!(t >= start)) continue;
      const b = buckets[Math.min(HOUR_BUCKETS - 1, Math.floor((t - start) / minute))];
      b.cost += Number(r.cost_usd);
      b.tokens += r.input_tokens + r.output_tokens;
      streams++;
    }
    for (const r of state.running.values()) {
      buckets[HOUR_BUCKETS - 1].liveCost += r.cost;
      buckets[HOUR_BUCKETS - 1].liveTokens += r.tokens;
    }
    const total = buckets.reduce((s, b) => s + b.cost, 0);
    SpendChart.render(box, {
      buckets, money, compact, labelEvery: 10,
      title: "Cost and tokens per minute, last hour",
      description: `${money(total)} across ${streams} streams in the last hour` + (state.running.size ? `, ${state.running.size} running.` : "."),
    });
  }

  function showScope() {
    $("all-users-field").hidden = GatewayAuth.current().role !== "service_role";
  }

  // The range's name, wherever a window is labelled: the day chart's switch says the same as the picker.
  function rangeName() {
    const picked = $("range").selectedOptions[0];
    return picked ? picked.textContent : "The range";
  }

  function showRange() {
    $("scale-days").textContent = rangeName() + ", per day";
  }

  async function init() {
    await GatewaySignIn.mount((_who, newUser) => {
      if (!newUser) return; // the same session, refreshed: the live feed carries on
      showScope();
      state.running.clear();
      load();
      goLive();
    });
    showScope();
    showRange();
    $("all-users").addEventListener("change", () => {
      state.running.clear(); // whose streams are running changes with the scope
      load();
      goLive();
    });
    $("range").addEventListener("change", () => {
      showRange();
      load();
    });
    for (const r of document.querySelectorAll('input[name="scale"]')) r.addEventListener("change", renderChart);
    setInterval(() => {
      renderRunning();
      renderChart(); // the last-hour window slides
    }, 15000);
    let resized = null;
    window.addEventListener("resize", () => {
      clearTimeout(resized);
      resized = setTimeout(renderChart, 150); // the chart is drawn at its box's width
    });
    load();
    goLive();
  }

  document.addEventListener("DOMContentLoaded", init);
})();
