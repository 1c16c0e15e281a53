// Shared by the chat page and the dashboard: authenticated fetches, tickets, SSE over fetch, formatting, DOM helpers.
"use strict";

const Gateway = (() => {
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

  // fetch with the current token. A refused token is reported to GatewayAuth (which refreshes an expired
  // session, or forgets the token with the gateway's reason); the request is sent once more after a refresh.
  // Resolves to the Response when it is ok, else rejects with an ApiError.
  async function authFetch(path, options = {}, again = true) {
    const token = await GatewayAuth.bearer();
    if (!token) throw new ApiError(401, "missing_token", "sign in first");
    const headers = Object.assign({ authorization: "Bearer " + token }, options.headers || {});
    const resp = await fetch(path, Object.assign({}, options, { headers }));
    if (resp.ok) return resp;
    const err = await failure(resp);
    if (again && (await GatewayAuth.refused(err.code, err.message, token))) return authFetch(path, options, false);
    throw err;
  }

  async function api(path, options = {}) {
    return (await authFetch(path, options)).json();
  }

  function token() {
    return GatewayAuth.current().token;
  }

  // A single-use ticket for EventSource and WebSocket URLs (they cannot send headers).
  // Null when this gateway has no ticket endpoint.
  async function ticket() {
    try {
      return (await api("/v1/tickets", { method: "POST" })).ticket;
    } catch (e) {
      if (e.status === 404 || e.status === 405) return null;
      throw e;
    }
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

  return { token, api, authFetch, ticket, readEvents, money, count, compact, el, sleep, backoff, ApiError };
})();
