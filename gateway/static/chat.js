// The chat page: models and fallbacks, answers as they stream (fallbacks marked, cost shown), stop, the status
// pill, keys. The transports are in chat-transport.js.
"use strict";

(() => {
  const { el, money, count } = Gateway;
  const $ = (id) => document.getElementById(id);

  const NARROW = "(max-width: 860px)";

  let models = [];
  const history = []; // finished turns, sent with the next message
  let current = null; // the answer being streamed
  let counter = 0;
  let outcome = { state: "idle", text: "" }; // how the last answer ended, until the next one starts
  const transport = ChatTransport.create({
    active: () => current,
    apply: (a, ev) => apply(a, ev),
    fail: (a, code, message) => fail(a, code, message),
    phase: (a, name) => phase(a, name),
    changed: () => showConn(),
  });

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
    else if (transport.socketOpen()) [state, text] = ["connected", "Connected · WebSocket"];
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
    const over = document.querySelector('input[name="transport"]:checked').value;
    const a = newAnswer("c" + Date.now().toString(36) + (++counter), over);
    current = a;
    outcome = { state: "idle", text: "" };
    showConn();
    $("stop").disabled = false;
    $("send").disabled = true;
    const body = { model, fallbacks: chosenFallbacks(), messages: history.slice() };
    const max = parseInt($("max-tokens").value, 10);
    if (max > 0) body.max_tokens = max;
    scrollDown();
    transport.start(a, body);
  }

  async function stop() {
    const a = current;
    if (!a || a.finished) return;
    $("stop").disabled = true;
    await transport.stop(a);
  }

  // -- signing in, keys, layout --------------------------------------------------------------------

  function onSignedIn(who, newUser) {
    if (!newUser) {
      transport.reauth(who.token); // the same session, refreshed
      return;
    }
    transport.reset();
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
