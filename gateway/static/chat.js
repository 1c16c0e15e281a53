// The chat page: WebSocket (or SSE) streaming, fallbacks shown in the answer, cost per answer, stop, resume.
"use strict";

(() => {
  const { el, money, count } = Gateway;
  const $ = (id) => document.getElementById(id);
  const STREAM_EVENTS = ["stream.started", "delta", "tool_call.delta", "fallback", "usage", "done", "error", "server.draining"];
  const MAX_RETRIES = 8;
  const AUTH_CODES = GatewayAuth.REFUSED;

  const NARROW = "(max-width: 860px)";

  let models = [];
  const history = []; // finished turns, sent with the next message
  let current = null; // the answer being streamed
  let ws = null;
  let wsOpening = null;
  let counter = 0;
  let outcome = { state: "idle", text: "" }; // how the last answer ended, until the next one starts

  // -- connection status -------------------------------------------------------------------
  // One pill, derived from what is true now: who is signed in, the answer streaming (and over what), how the
  // last one ended, and whether a socket is open.

  function showConn() {
    const pill = $("conn");
    const a = current;
    let state;
    let text;
    if (GatewayAuth.current().kind === "none") [state, text] = ["signed-out", "Not signed in"];
    else if (a && !a.finished) {
      const over = a.transport === "ws" ? "WebSocket" : "SSE";
      if (a.phase === "reconnecting") [state, text] = ["reconnecting", "Reconnecting… (" + over + ")"];
      else if (a.phase === "draining") [state, text] = ["reconnecting", "Server restarting…"];
      else if (a.phase === "streaming") [state, text] = ["streaming", "Streaming · " + over];
      else [state, text] = ["connecting", "Connecting… (" + over + ")"];
    } else if (outcome.state !== "idle") [state, text] = [outcome.state, outcome.text];
    else if (ws && ws.readyState === WebSocket.OPEN) [state, text] = ["connected", "Connected · WebSocket"];
    else [state, text] = ["idle", "Ready"];
    pill.dataset.state = state;
    pill.textContent = text;
  }

  function phase(a, name) {
    a.phase = name;
    showConn();
  }

  // -- models and fallbacks ----------------------------------------------------------------

  async function loadModels() {
    const box = $("models-error");
    box.hidden = true;
    try {
      models = (await Gateway.api("/v1/models")).data;
    } catch (e) {
      models = [];
      box.textContent = e.status === 401 ? "Sign in to choose a model." : "Could not load models: " + e.message;
      box.hidden = false;
    }
    const select = $("model");
    const previous = select.value;
    select.replaceChildren(
      ...models.map((m) =>
        el("option", { value: m.id, disabled: !m.available }, m.id + " · " + m.provider + (m.available ? "" : " (no key)"))
      )
    );
    const usable = models.filter((m) => m.available);
    const pick = usable.find((m) => m.id === previous) || usable.find((m) => m.id === "mock") || usable[0];
    if (pick) select.value = pick.id;
    renderFallbacks();
    GatewayKeys.setModels(models);
  }

  function renderFallbacks() {
    const chosen = models.find((m) => m.id === $("model").value);
    const list = $("fallbacks");
    if (!chosen) {
      list.replaceChildren();
      return;
    }
    const defaults = chosen.fallbacks || [];
    const others = models.filter((m) => m.id !== chosen.id && m.available);
    others.sort((a, b) => {
      const ia = defaults.indexOf(a.id);
      const ib = defaults.indexOf(b.id);
      return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a.id.localeCompare(b.id);
    });
    list.replaceChildren(
      ...others.map((m) => {
        const id = "fb-" + m.id.replace(/[^a-z0-9-]/gi, "_");
        return el(
          "li",
          {},
          el("input", { type: "checkbox", id, value: m.id, checked: defaults.includes(m.id) }),
          el("label", { for: id }, m.id)
        );
      })
    );
    if (!others.length) list.replaceChildren(el("li", { class: "hint" }, "No other model available"));
    summarize();
  }

  function chosenFallbacks() {
    return [...$("fallbacks").querySelectorAll("input:checked")].map((i) => i.value);
  }

  // What the folded settings say when closed (on a phone): the chain that will answer.
  function summarize() {
    const model = $("model").value;
    $("settings-summary").textContent = model ? [model, ...chosenFallbacks()].join(" → ") : "";
  }

  // -- rendering an answer -----------------------------------------------------------------

  function addUserMessage(text) {
    $("empty").hidden = true;
    $("conversation").append(el("div", { class: "msg user" }, text));
  }

  function newAnswer(id, transport) {
    const text = el("div", { class: "text" });
    const meta = el("div", { class: "meta" });
    const box = el("article", { class: "msg assistant", "data-state": "streaming", "aria-busy": "true" }, text, meta);
    $("conversation").append(box);
    const node = document.createTextNode("");
    text.append(node);
    return {
      id, transport, box, textEl: text, metaEl: meta, node,
      streamId: null, lastSeq: 0, text: "", segments: [], finished: false, retries: 0, es: null, abort: null,
      tools: new Map(), phase: "connecting",
    };
  }

  function scrollDown() {
    const c = $("conversation");
    c.scrollTop = c.scrollHeight;
  }

  function setMeta(a, parts) {
    a.metaEl.replaceChildren(...parts.filter(Boolean));
  }

  function finish(a, state, code) {
    a.finished = true;
    a.box.dataset.state = state;
    a.box.removeAttribute("aria-busy");
    if (a.es) a.es.close();
    if (current === a) {
      current = null;
      $("stop").disabled = true;
      $("send").disabled = false;
      outcome = state === "stopped" ? { state, text: "Stopped" }
        : state === "error" ? { state, text: "Error" + (code ? " · " + code : "") }
        : { state: "idle", text: "" };
      showConn();
    }
  }

  function fail(a, code, message) {
    if (a.finished) return;
    setMeta(a, [el("span", { class: "error" }, message + (code ? " (" + code + ")" : ""))]);
    finish(a, "error", code);
  }

  // The chain an answer took, each model once: a failed one with its reason; a stopped one plainly (the
  // answer's own "cancelled" says why it ended).
  function pathOf(segments) {
    return segments.map((s) => s.model + (s.status === "ok" || s.status === "cancelled" ? "" : " ✕ " + (s.reason || s.status))).join(" → ");
  }

  // A tool call arrives in pieces: the first names the function, the rest add to its JSON arguments.
  function toolDelta(a, ev) {
    let t = a.tools.get(ev.index);
    if (!t) {
      const name = el("code", { class: "tool-name" }, ev.name || "tool");
      const args = el("code", { class: "tool-args" });
      const box = el("div", { class: "tool-call", "data-index": String(ev.index), title: "tool call " + (ev.call_id || "") },
        el("span", { class: "tool-label" }, "calls"), name, args);
      t = { box, name: ev.name || "tool", argsEl: args, args: "" };
      a.tools.set(ev.index, t);
      a.textEl.append(box);
      a.node = document.createTextNode("");
      a.textEl.append(a.node);
    }
    if (ev.arguments) {
      t.args += ev.arguments;
      t.argsEl.textContent = t.args;
    }
  }

  // One event of the stream, from whichever transport; events already seen (by seq) are ignored.
  function apply(a, ev) {
    if (a.finished || typeof ev.seq !== "number" || ev.seq <= a.lastSeq) return;
    a.lastSeq = ev.seq;
    a.streamId = ev.stream_id;
    a.box.dataset.streamId = ev.stream_id;
    if (a.phase !== "streaming") phase(a, "streaming");
    switch (ev.type) {
      case "stream.started":
        a.box.dataset.model = ev.model;
        setMeta(a, [el("span", {}, ev.model + " · " + ev.provider)]);
        break;
      case "delta":
        a.node.appendData(ev.text);
        a.text += ev.text;
        break;
      case "tool_call.delta":
        toolDelta(a, ev);
        break;
      case "fallback": {
        const restart = ev.mode === "restart";
        const mark = el(
          "span",
          { class: "fallback-mark", title: ev.from_model + " failed (" + ev.reason + "); " + ev.to_model + (restart ? " starts over" : " continues") },
          "↪ " + ev.to_model + (restart ? " (restarted)" : "")
        );
        if (restart) {
          // the partial text and any half-made tool call are void: keep them visible but struck through
          const old = el("del", {}, a.text);
          const voidCalls = [...a.tools.values()].map((t) => (t.box.classList.add("void"), t.box));
          a.textEl.replaceChildren(old, ...voidCalls);
          a.text = "";
          a.tools = new Map();
        }
        a.node = document.createTextNode("");
        a.textEl.append(mark, a.node);
        a.box.dataset.fallbacks = String(Number(a.box.dataset.fallbacks || 0) + 1);
        break;
      }
      case "usage":
        a.segments.push(ev);
        break;
      case "done": {
        const path = pathOf(ev.segments);
        setMeta(a, [
          el("span", { class: "cost", title: "what this answer cost" + (ev.usage.estimated ? " (partly estimated)" : "") },
            money(ev.cost_usd) + (ev.usage.estimated ? " (est.)" : "")),
          el("span", {}, count(ev.usage.input_tokens) + " in · " + count(ev.usage.output_tokens) + " out"),
          el("span", {}, path),
          ev.finish_reason !== "stop" ? el("span", {}, ev.finish_reason) : null,
        ]);
        // The page runs no tools: a tool call goes into the history as a line of text describing it.
        const calls = [...a.tools.values()].map((t) => "[tool call " + t.name + "(" + t.args + ")]");
        history.push({ role: "assistant", content: [a.text, ...calls].filter(Boolean).join("\n") || "(no text)" });
        finish(a, ev.finish_reason === "cancelled" ? "stopped" : "done");
        break;
      }
      case "error":
        fail(a, ev.code, ev.message);
        break;
      case "server.draining":
        phase(a, "draining");
        break;
      default:
        break;
    }
    scrollDown();
  }

  // -- WebSocket transport -------------------------------------------------------------------

  function wsUrl() {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/v1/ws";
  }

  async function openSocket() {
    if (ws && ws.readyState === WebSocket.OPEN) return ws;
    if (wsOpening) return wsOpening;
    wsOpening = (async () => {
      let ticket = null;
      try {
        ticket = await Gateway.ticket();
      } catch (e) {
        if (e.status === 401 || e.status === 403) throw e;
      }
      // A ticket in the URL where the gateway has them; else the token as a subprotocol.
      const sock = ticket
        ? new WebSocket(wsUrl() + "?batch=1&ticket=" + encodeURIComponent(ticket))
        : new WebSocket(wsUrl() + "?batch=1", ["bearer", await GatewayAuth.bearer()]);
      await new Promise((resolve, reject) => {
        sock.onopen = resolve;
        sock.onerror = () => reject(new Error("could not connect"));
        sock.onclose = (e) => reject(Object.assign(new Error("closed: " + (e.reason || e.code)), { code: e.reason, close: e.code }));
      });
      sock.onmessage = (m) => {
        const msg = JSON.parse(m.data);
        for (const f of Array.isArray(msg) ? msg : [msg]) onFrame(f); // ?batch=1: events that came together
      };
      sock.onclose = (e) => onSocketClosed(sock, e);
      sock.onerror = null;
      ws = sock;
      showConn();
      return sock;
    })();
    try {
      return await wsOpening;
    } finally {
      wsOpening = null;
    }
  }

  // A refreshed session reaches an open socket before the old token expires (the gateway closes it at `exp`).
  function reauthSocket(token) {
    if (ws && ws.readyState === WebSocket.OPEN && token) ws.send(JSON.stringify({ type: "auth", token }));
  }

  function onFrame(f) {
    if (f.type === "error" && !f.stream_id && AUTH_CODES.has(f.code)) {
      GatewayAuth.refused(f.code, f.message); // an `auth` frame with a refreshed token was refused
      return;
    }
    const a = current;
    if (f.type === "pong" || f.type === "auth.ok" || !a || a.transport !== "ws") return;
    if (f.id !== a.id) return;
    if (!f.stream_id && f.type === "error") {
      fail(a, f.code, f.message); // the start (or a resume) was refused
      return;
    }
    apply(a, f);
  }

  async function onSocketClosed(sock, e) {
    if (ws === sock) ws = null;
    const a = current && current.transport === "ws" && !current.finished ? current : null;
    if (e.code === 4401) {
      await GatewayAuth.refused(e.reason, "the gateway closed the connection (" + e.reason + ")");
      if (a) fail(a, e.reason, "the gateway refused the token");
      showConn();
      return;
    }
    if (e.code === 4001) await GatewayAuth.bearer(); // the token expired on the socket: resume with a fresh one
    if (a) resumeSocket(a);
    else showConn();
  }

  async function resumeSocket(a) {
    while (!a.finished) {
      if (a.retries >= MAX_RETRIES) {
        fail(a, null, "lost the connection");
        return;
      }
      phase(a, "reconnecting");
      await Gateway.sleep(Gateway.backoff(a.retries++));
      try {
        const sock = await openSocket();
        if (!a.streamId) {
          fail(a, null, "the connection dropped before the answer started");
          return;
        }
        sock.send(JSON.stringify({ type: "chat.resume", id: a.id, stream_id: a.streamId, last_seq: a.lastSeq }));
        a.retries = 0;
        phase(a, "streaming");
        return;
      } catch (e) {
        if (e.status === 401 || e.status === 403) {
          fail(a, e.code, "sign in again: " + e.message);
          return;
        }
      }
    }
  }

  async function startOverSocket(a, body) {
    try {
      const sock = await openSocket();
      sock.send(JSON.stringify(Object.assign({ type: "chat.start", id: a.id }, body)));
    } catch (e) {
      fail(a, e.code, e.status === 401 || e.status === 403 ? "sign in first: " + e.message : "could not connect: " + e.message);
    }
  }

  // -- SSE transport ---------------------------------------------------------------------------

  async function startOverSSE(a, body) {
    a.abort = new AbortController();
    let resp;
    try {
      resp = await Gateway.authFetch("/v1/chat/stream", {
        method: "POST",
        headers: { "content-type": "application/json", "x-client-id": a.id },
        body: JSON.stringify(body),
        signal: a.abort.signal,
      });
    } catch (e) {
      if (e instanceof Gateway.ApiError) fail(a, e.code, e.message);
      else fail(a, null, "could not reach the gateway");
      return;
    }
    a.streamId = resp.headers.get("x-stream-id");
    phase(a, "streaming");
    try {
      await Gateway.readEvents(resp.body, (_name, data) => apply(a, data));
    } catch (_) {
      /* the connection broke: resume below */
    }
    if (!a.finished) resumeOverEventSource(a);
  }

  // Resume with a fresh EventSource: a new ticket each time (tickets are single use), from the last seq seen.
  async function resumeOverEventSource(a) {
    if (a.finished) return;
    if (a.retries >= MAX_RETRIES || !a.streamId) {
      fail(a, null, "lost the connection");
      return;
    }
    phase(a, "reconnecting");
    await Gateway.sleep(Gateway.backoff(a.retries++));
    if (a.finished) return;
    let ticket;
    try {
      ticket = await Gateway.ticket();
    } catch (e) {
      if (e.status === 401 || e.status === 403) return fail(a, e.code, "sign in again: " + e.message);
      return resumeOverEventSource(a);
    }
    if (!ticket) return resumeOverFetch(a);
    const url = "/v1/streams/" + encodeURIComponent(a.streamId) + "/events?after=" + a.lastSeq + "&ticket=" + encodeURIComponent(ticket);
    const es = new EventSource(url);
    a.es = es;
    es.onopen = () => {
      a.retries = 0;
      phase(a, "streaming");
    };
    for (const name of STREAM_EVENTS) {
      // "error" is also the name of EventSource's own connection-error event, which carries no data
      es.addEventListener(name, (m) => typeof m.data === "string" && apply(a, JSON.parse(m.data)));
    }
    es.onerror = () => {
      // The browser would retry with the same (now used) ticket: take over with a new one.
      es.close();
      if (a.es === es) a.es = null;
      if (!a.finished) resumeOverEventSource(a);
    };
  }

  // Gateways without tickets: resume over fetch, which can send the header and Last-Event-ID.
  async function resumeOverFetch(a) {
    try {
      const resp = await Gateway.authFetch("/v1/streams/" + encodeURIComponent(a.streamId) + "/events", {
        headers: { "last-event-id": a.streamId + ":" + a.lastSeq },
      });
      a.retries = 0;
      phase(a, "streaming");
      await Gateway.readEvents(resp.body, (_n, data) => apply(a, data));
    } catch (e) {
      if (e instanceof Gateway.ApiError && (e.status === 404 || e.status === 410 || e.status === 401)) {
        return fail(a, e.code, e.message);
      }
    }
    if (!a.finished) resumeOverEventSource(a);
  }

  // -- sending and stopping ----------------------------------------------------------------------

  function send(e) {
    e.preventDefault();
    const prompt = $("prompt").value.trim();
    const model = $("model").value;
    if (!prompt || current) return;
    if (!model) {
      $("models-error").textContent = "Sign in and pick a model first.";
      $("models-error").hidden = false;
      return;
    }
    $("prompt").value = "";
    addUserMessage(prompt);
    history.push({ role: "user", content: prompt });
    const transport = document.querySelector('input[name="transport"]:checked').value;
    const a = newAnswer("c" + Date.now().toString(36) + (++counter), transport);
    current = a;
    outcome = { state: "idle", text: "" };
    showConn();
    $("stop").disabled = false;
    $("send").disabled = true;
    const body = { model, fallbacks: chosenFallbacks(), messages: history.slice() };
    const max = parseInt($("max-tokens").value, 10);
    if (max > 0) body.max_tokens = max;
    scrollDown();
    if (transport === "ws") startOverSocket(a, body);
    else startOverSSE(a, body);
  }

  async function stop() {
    const a = current;
    if (!a || a.finished) return;
    $("stop").disabled = true;
    if (a.transport === "ws" && ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({ type: "chat.cancel", id: a.id }));
      return;
    }
    if (a.streamId) {
      try {
        await Gateway.api("/v1/streams/" + encodeURIComponent(a.streamId) + "/cancel", { method: "POST" });
      } catch (_) {
        /* it may have finished meanwhile */
      }
    } else if (a.abort) {
      a.abort.abort();
      fail(a, null, "stopped");
    }
  }

  // -- signing in, keys, layout --------------------------------------------------------------------

  function onSignedIn(who, newUser) {
    if (!newUser) {
      reauthSocket(who.token); // the same session, refreshed
      return;
    }
    if (ws) ws.close();
    ws = null;
    showConn();
    loadModels();
    GatewayKeys.refresh();
  }

  function openKeysIfAsked() {
    if (location.hash !== "#keys") return;
    $("keys").open = true;
    $("keys").scrollIntoView({ block: "start" });
  }

  async function init() {
    // On a phone the settings start folded, so the conversation and the composer have the screen.
    if (window.matchMedia(NARROW).matches) {
      $("settings").open = false;
      $("prompt").placeholder = "Message";
    }
    GatewayKeys.mount($("key-list"), loadModels);
    await GatewaySignIn.mount(onSignedIn);
    $("composer").addEventListener("submit", send);
    $("stop").addEventListener("click", stop);
    $("model").addEventListener("change", renderFallbacks);
    $("fallbacks").addEventListener("change", summarize);
    $("prompt").addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) send(e);
    });
    window.addEventListener("hashchange", openKeysIfAsked);
    openKeysIfAsked();
    showConn();
    loadModels();
    GatewayKeys.refresh();
  }

  document.addEventListener("DOMContentLoaded", init);
})();
