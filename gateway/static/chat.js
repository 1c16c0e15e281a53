// The chat page: WebSocket (or SSE) streaming, fallbacks shown in the answer, cost per answer, stop, resume.
"use strict";

(() => {
  const { el, money, count } = Gateway;
  const $ = (id) => document.getElementById(id);
  const STREAM_EVENTS = ["stream.started", "delta", "tool_call.delta", "fallback", "seam", "usage", "done", "error", "server.draining"];
  const MAX_RETRIES = 8;

  let models = [];
  const history = []; // finished turns, sent with the next message
  let current = null; // the answer being streamed
  let ws = null;
  let wsOpening = null;
  let counter = 0;

  // -- connection status -------------------------------------------------------------------

  function setConn(state, text) {
    const pill = $("conn");
    pill.dataset.state = state;
    pill.textContent = text;
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
  }

  function chosenFallbacks() {
    return [...$("fallbacks").querySelectorAll("input:checked")].map((i) => i.value);
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
      tools: new Map(),
    };
  }

  function scrollDown() {
    const c = $("conversation");
    c.scrollTop = c.scrollHeight;
  }

  function setMeta(a, parts) {
    a.metaEl.replaceChildren(...parts.filter(Boolean));
  }

  function finish(a, state) {
    a.finished = true;
    a.box.dataset.state = state;
    a.box.removeAttribute("aria-busy");
    if (a.es) a.es.close();
    if (current === a) {
      current = null;
      $("stop").disabled = true;
      $("send").disabled = false;
    }
  }

  function fail(a, code, message) {
    if (a.finished) return;
    setMeta(a, [el("span", { class: "error" }, message + (code ? " (" + code + ")" : ""))]);
    finish(a, "error");
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

  // The model that took over rewrote the answer: strike through the last `n` characters shown (code points, as
  // the server counts them), across the text nodes between fallback marks, and keep the rest.
  function dropTail(a, n) {
    const nodes = [];
    const walker = document.createTreeWalker(a.textEl, NodeFilter.SHOW_TEXT);
    for (let t = walker.nextNode(); t; t = walker.nextNode()) {
      if (!t.parentElement.closest(".fallback-mark, del, .tool-call")) nodes.push(t);
    }
    for (let i = nodes.length - 1; i >= 0 && n > 0; i--) {
      const cps = Array.from(nodes[i].data);
      const cut = Math.min(n, cps.length);
      const del = el("del", { class: "seam-dropped" }, cps.slice(cps.length - cut).join(""));
      nodes[i].data = cps.slice(0, cps.length - cut).join("");
      nodes[i].after(del);
      n -= cut;
    }
  }

  // One event of the stream, from whichever transport; events already seen (by seq) are ignored.
  function apply(a, ev) {
    if (a.finished || typeof ev.seq !== "number" || ev.seq <= a.lastSeq) return;
    a.lastSeq = ev.seq;
    a.streamId = ev.stream_id;
    a.box.dataset.streamId = ev.stream_id;
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
          {
            class: "fallback-mark",
            title: ev.from_model + (ev.reason === "circuit_open" ? " skipped (its circuit is open); " : " failed (" + ev.reason + "); ") +
              ev.to_model + (restart ? " starts over" : " continues"),
          },
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
      case "seam": {
        dropTail(a, ev.discard_chars);
        a.text = Array.from(a.text).slice(0, ev.keep_chars).join("");
        const mark = el("span", { class: "fallback-mark seam-mark", title: "the next model rewrote the answer from here" }, "↺");
        a.node = document.createTextNode("");
        a.textEl.append(mark, a.node);
        break;
      }
      case "usage":
        a.segments.push(ev);
        break;
      case "done": {
        const path = ev.segments.map((s) => s.model + (s.status === "ok" ? "" : " ✕ " + (s.reason || s.status))).join(" → ");
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
        setConn("reconnecting", "Server restarting");
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
      setConn("connecting", "Connecting…");
      let ticket = null;
      try {
        ticket = await Gateway.ticket();
      } catch (e) {
        if (e.status === 401 || e.status === 403) throw e;
      }
      // A ticket in the URL where the gateway has them; else the token as a subprotocol.
      const sock = ticket
        ? new WebSocket(wsUrl() + "?batch=1&ticket=" + encodeURIComponent(ticket))
        : new WebSocket(wsUrl() + "?batch=1", ["bearer", Gateway.token()]);
      await new Promise((resolve, reject) => {
        sock.onopen = resolve;
        sock.onerror = () => reject(new Error("could not connect"));
        sock.onclose = (e) => reject(new Error("closed: " + (e.reason || e.code)));
      });
      sock.onmessage = (m) => {
        const msg = JSON.parse(m.data);
        for (const f of Array.isArray(msg) ? msg : [msg]) onFrame(f); // ?batch=1: events that came together
      };
      sock.onclose = (e) => onSocketClosed(sock, e);
      sock.onerror = null;
      ws = sock;
      setConn("connected", "Connected");
      return sock;
    })();
    try {
      return await wsOpening;
    } finally {
      wsOpening = null;
    }
  }

  function onFrame(f) {
    const a = current;
    if (f.type === "pong" || !a || a.transport !== "ws") return;
    if (f.id !== a.id) return;
    if (!f.stream_id && f.type === "error") {
      fail(a, f.code, f.message); // the start (or a resume) was refused
      return;
    }
    apply(a, f);
  }

  function onSocketClosed(sock, e) {
    if (ws === sock) ws = null;
    if (e.code === 4401) {
      setConn("signed-out", "Sign-in refused");
      if (current && current.transport === "ws") fail(current, e.reason, "the gateway refused the token");
      return;
    }
    if (current && current.transport === "ws" && !current.finished) {
      resumeSocket(current);
    } else {
      setConn("offline", "Disconnected");
    }
  }

  async function resumeSocket(a) {
    while (!a.finished) {
      if (a.retries >= MAX_RETRIES) {
        fail(a, null, "lost the connection");
        return;
      }
      setConn("reconnecting", "Reconnecting…");
      await Gateway.sleep(Gateway.backoff(a.retries++));
      try {
        const sock = await openSocket();
        if (!a.streamId) {
          fail(a, null, "the connection dropped before the answer started");
          return;
        }
        sock.send(JSON.stringify({ type: "chat.resume", id: a.id, stream_id: a.streamId, last_seq: a.lastSeq }));
        a.retries = 0;
        setConn("connected", "Resumed");
        return;
      } catch (e) {
        if (e.status === 401) {
          fail(a, "missing_token", "sign in again");
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
      fail(a, e.code, e.status === 401 ? "sign in first" : "could not connect: " + e.message);
    }
  }

  // -- SSE transport ---------------------------------------------------------------------------

  async function startOverSSE(a, body) {
    a.abort = new AbortController();
    let resp;
    try {
      resp = await fetch("/v1/chat/stream", {
        method: "POST",
        headers: { authorization: "Bearer " + Gateway.token(), "content-type": "application/json", "x-client-id": a.id },
        body: JSON.stringify(body),
        signal: a.abort.signal,
      });
    } catch (e) {
      fail(a, null, "could not reach the gateway");
      return;
    }
    if (!resp.ok) {
      let err = {};
      try {
        err = (await resp.json()).error || {};
      } catch (_) {
        /* not JSON */
      }
      fail(a, err.code, err.message || resp.statusText);
      return;
    }
    a.streamId = resp.headers.get("x-stream-id");
    setConn("connected", "Streaming");
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
    setConn("reconnecting", "Reconnecting…");
    await Gateway.sleep(Gateway.backoff(a.retries++));
    if (a.finished) return;
    let ticket;
    try {
      ticket = await Gateway.ticket();
    } catch (e) {
      if (e.status === 401) return fail(a, e.code, "sign in again");
      return resumeOverEventSource(a);
    }
    if (!ticket) return resumeOverFetch(a);
    const url = "/v1/streams/" + encodeURIComponent(a.streamId) + "/events?after=" + a.lastSeq + "&ticket=" + encodeURIComponent(ticket);
    const es = new EventSource(url);
    a.es = es;
    es.onopen = () => {
      a.retries = 0;
      setConn("connected", "Resumed");
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
      const resp = await fetch("/v1/streams/" + encodeURIComponent(a.streamId) + "/events", {
        headers: { authorization: "Bearer " + Gateway.token(), "last-event-id": a.streamId + ":" + a.lastSeq },
      });
      if (resp.status === 404 || resp.status === 410) {
        const err = (await resp.json()).error || {};
        return fail(a, err.code, err.message);
      }
      if (resp.ok) {
        a.retries = 0;
        setConn("connected", "Resumed");
        await Gateway.readEvents(resp.body, (_n, data) => apply(a, data));
      }
    } catch (_) {
      /* broke again */
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

  function init() {
    Gateway.mountSignIn(() => {
      if (ws) ws.close();
      loadModels();
    });
    $("composer").addEventListener("submit", send);
    $("stop").addEventListener("click", stop);
    $("model").addEventListener("change", renderFallbacks);
    $("prompt").addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) send(e);
    });
    loadModels();
  }

  document.addEventListener("DOMContentLoaded", init);
})();
