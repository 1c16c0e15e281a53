// The chat page's transports: one WebSocket for every answer (`?batch=1`, a ticket in the URL), or one SSE
// request per answer; both resume a dropped stream from the last seq seen (chat.resume on a new socket, or a
// fresh EventSource with a new single-use ticket). Events go to the page through `hooks`.
"use strict";

const ChatTransport = (() => {
  const STREAM_EVENTS = ["stream.started", "delta", "tool_call.delta", "fallback", "seam", "usage", "done", "error", "server.draining"];
  const MAX_RETRIES = 8;
  const AUTH_CODES = GatewayAuth.REFUSED;

  // hooks: active() -> the answer streaming now; apply(a, event); fail(a, code, message); phase(a, name);
  // changed() when the socket opened or closed.
  function create(hooks) {
    let ws = null;
    let wsOpening = null;

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
        hooks.changed();
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
      const a = hooks.active();
      if (f.type === "pong" || f.type === "auth.ok" || !a || a.transport !== "ws") return;
      if (f.id !== a.id) return;
      if (!f.stream_id && f.type === "error") {
        hooks.fail(a, f.code, f.message); // the start (or a resume) was refused
        return;
      }
      hooks.apply(a, f);
    }

    async function onSocketClosed(sock, e) {
      if (ws === sock) ws = null;
      const now = hooks.active();
      const a = now && now.transport === "ws" && !now.finished ? now : null;
      if (e.code === 4401) {
        await GatewayAuth.refused(e.reason, "the gateway closed the connection (" + e.reason + ")");
        if (a) hooks.fail(a, e.reason, "the gateway refused the token");
        hooks.changed();
        return;
      }
      if (e.code === 4001) await GatewayAuth.bearer(); // the token expired on the socket: resume with a fresh one
      if (a) resumeSocket(a);
      else hooks.changed();
    }

    async function resumeSocket(a) {
      while (!a.finished) {
        if (a.retries >= MAX_RETRIES) {
          hooks.fail(a, null, "lost the connection");
          return;
        }
        hooks.phase(a, "reconnecting");
        await Gateway.sleep(Gateway.backoff(a.retries++));
        try {
          const sock = await openSocket();
          if (!a.streamId) {
            hooks.fail(a, null, "the connection dropped before the answer started");
            return;
          }
          sock.send(JSON.stringify({ type: "chat.resume", id: a.id, stream_id: a.streamId, last_seq: a.lastSeq }));
          a.retries = 0;
          hooks.phase(a, "streaming");
          return;
        } catch (e) {
          if (e.status === 401 || e.status === 403) {
            hooks.fail(a, e.code, "sign in again: " + e.message);
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
        hooks.fail(a, e.code, e.status === 401 || e.status === 403 ? "sign in first: " + e.message : "could not connect: " + e.message);
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
        if (e instanceof Gateway.ApiError) hooks.fail(a, e.code, e.message);
        else hooks.fail(a, null, "could not reach the gateway");
        return;
      }
      a.streamId = resp.headers.get("x-stream-id");
      hooks.phase(a, "streaming");
      try {
        await Gateway.readEvents(resp.body, (_name, data) => hooks.apply(a, data));
      } catch (_) {
        /* the connection broke: resume below */
      }
      if (!a.finished) resumeOverEventSource(a);
    }

    // Resume with a fresh EventSource: a new ticket each time (tickets are single use), from the last seq seen.
    async function resumeOverEventSource(a) {
      if (a.finished) return;
      if (a.retries >= MAX_RETRIES || !a.streamId) {
        hooks.fail(a, null, "lost the connection");
        return;
      }
      hooks.phase(a, "reconnecting");
      await Gateway.sleep(Gateway.backoff(a.retries++));
      if (a.finished) return;
      let ticket;
      try {
        ticket = await Gateway.ticket();
      } catch (e) {
        if (e.status === 401 || e.status === 403) return hooks.fail(a, e.code, "sign in again: " + e.message);
        return resumeOverEventSource(a);
      }
      if (!ticket) return resumeOverFetch(a);
      const url = "/v1/streams/" + encodeURIComponent(a.streamId) + "/events?after=" + a.lastSeq + "&ticket=" + encodeURIComponent(ticket);
      const es = new EventSource(url);
      a.es = es;
      es.onopen = () => {
        a.retries = 0;
        hooks.phase(a, "streaming");
      };
      for (const name of STREAM_EVENTS) {
        // "error" is also the name of EventSource's own connection-error event, which carries no data
        es.addEventListener(name, (m) => typeof m.data === "string" && hooks.apply(a, JSON.parse(m.data)));
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
        hooks.phase(a, "streaming");
        await Gateway.readEvents(resp.body, (_n, data) => hooks.apply(a, data));
      } catch (e) {
        if (e instanceof Gateway.ApiError && (e.status === 404 || e.status === 410 || e.status === 401)) {
          return hooks.fail(a, e.code, e.message);
        }
      }
      if (!a.finished) resumeOverEventSource(a);
    }

    // Stop the answer: over its socket when it has one, else with the HTTP cancel (or by dropping the request
    // when it has no stream yet).
    async function stop(a) {
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
        hooks.fail(a, null, "stopped");
      }
    }

    function start(a, body) {
      if (a.transport === "ws") startOverSocket(a, body);
      else startOverSSE(a, body);
    }

    function socketOpen() {
      return Boolean(ws && ws.readyState === WebSocket.OPEN);
    }

    // The credential changed to another user's: the socket (authenticated as the old one) goes.
    function reset() {
      if (ws) ws.close();
      ws = null;
    }

    return { start, stop, reauth: reauthSocket, reset, socketOpen };
  }

  return { create };
})();
