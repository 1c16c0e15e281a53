// Shared by the chat page and the dashboard: the token, authenticated fetches, tickets, formatting, DOM helpers.
"use strict";

const Gateway = (() => {
  const KEY = "gateway.token";

  function devToken() {
    const meta = document.querySelector('meta[name="gateway-dev-token"]');
    return meta ? meta.getAttribute("content") || "" : "";
  }

  function token() {
    return localStorage.getItem(KEY) || devToken();
  }

  function tokenSource() {
    if (localStorage.getItem(KEY)) return "saved";
    return devToken() ? "development" : "none";
  }

  function setToken(value) {
    const v = (value || "").trim();
    if (v) localStorage.setItem(KEY, v);
    else localStorage.removeItem(KEY);
  }

  // What the token says about its user, for display only: the server verifies it on every request.
  function claims() {
    const t = token();
    try {
      const part = t.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
    } catch (_) {
      return null;
    }
  }

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function failure(resp) {
    let body = null;
    try {
      body = await resp.json();
    } catch (_) {
      /* not JSON */
    }
    const err = (body && body.error) || {};
    return new ApiError(resp.status, err.code || "http_" + resp.status, err.message || resp.statusText);
  }

  async function api(path, options = {}) {
    const headers = Object.assign({ authorization: "Bearer " + token() }, options.headers || {});
    const resp = await fetch(path, Object.assign({}, options, { headers }));
    if (!resp.ok) throw await failure(resp);
    return resp.json();
  }

  // A single-use ticket for EventSource and WebSocket URLs (they cannot send headers).
  // Null when this gateway has no ticket endpoint.
  async function ticket() {
    const resp = await fetch("/v1/tickets", { method: "POST", headers: { authorization: "Bearer " + token() } });
    if (resp.status === 404 || resp.status === 405) return null;
    if (!resp.ok) throw await failure(resp);
    return (await resp.json()).ticket;
  }

  // Server-sent events over fetch (used where a header is needed); calls onEvent(name, data, id).
  async function readEvents(body, onEvent) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value.replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        let name = "message";
        let id = null;
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) continue;
          const i = line.indexOf(":");
          const field = i < 0 ? line : line.slice(0, i);
          const val = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
          if (field === "event") name = val;
          else if (field === "id") id = val;
          else if (field === "data") data.push(val);
        }
        if (data.length) onEvent(name, JSON.parse(data.join("\n")), id);
      }
    }
  }

  function money(value) {
    const v = Number(value || 0);
    if (v === 0) return "$0.00";
    if (Math.abs(v) >= 1) return "$" + v.toFixed(2);
    if (Math.abs(v) >= 0.01) return "$" + v.toFixed(4);
    return "$" + v.toFixed(6);
  }

  function count(n) {
    return Number(n || 0).toLocaleString("en-US");
  }

  function compact(n) {
    const v = Number(n || 0);
    if (v >= 1e6) return (v / 1e6).toFixed(1).replace(/\.0$/, "") + "M";
    if (v >= 1e4) return (v / 1e3).toFixed(1).replace(/\.0$/, "") + "k";
    return count(v);
  }

  // el("span", {class: "x", title: "y"}, "text", otherNode): never parses HTML.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  function backoff(attempt) {
    return Math.min(5000, 250 * 2 ** attempt) * (0.75 + Math.random() * 0.5);
  }

  // The sign-in box in the top bar, the same on both pages.
  function mountSignIn(onChange) {
    const form = document.getElementById("signin");
    const input = document.getElementById("token");
    const who = document.getElementById("who");
    const out = document.getElementById("signout");
    function show() {
      const c = claims();
      const src = tokenSource();
      if (src === "none" || !c) {
        who.textContent = "Not signed in";
        who.dataset.state = "signed-out";
      } else {
        who.textContent = (c.email || c.sub || "signed in") + (src === "development" ? " (development token)" : "");
        who.dataset.state = "connected";
      }
      out.hidden = tokenSource() !== "saved";
      input.value = "";
      input.placeholder = src === "none" ? "Paste your access token" : "Switch token";
    }
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      if (!input.value.trim()) return;
      setToken(input.value);
      show();
      onChange();
    });
    out.addEventListener("click", () => {
      setToken("");
      show();
      onChange();
    });
    show();
  }

  return { token, setToken, claims, api, ticket, readEvents, money, count, compact, el, sleep, backoff, mountSignIn, ApiError };
})();
