// Who the pages act as, and the token they send the gateway: a Supabase Auth session (signed in here with
// email and password or a magic link, refreshed before it expires), a token pasted by hand, or, in
// development, the gateway's own development token. Talks to Supabase Auth's REST API directly.
"use strict";

const GatewayAuth = (() => {
  const STORE = "gateway.session";
  const OLD_STORE = "gateway.token"; // a pasted token, as earlier versions of the pages kept it
  const MARGIN_S = 60; // refresh this long before expiry (a quarter of the lifetime for shorter tokens)
  const RETRY_MS = 10000; // after a refresh that could not reach Auth
  // Codes the gateway answers when it refuses the credential itself (docs/protocol.md).
  const REFUSED = new Set([
    "missing_token", "invalid_token", "token_expired", "token_not_yet_valid", "invalid_signature",
    "invalid_algorithm", "invalid_audience", "invalid_issuer", "unknown_key", "anon_refused", "invalid_role",
  ]);

  const listeners = new Set();
  let timer = null;
  let refreshing = null;
  let notice = null; // {code, message}: why the last credential was dropped, until shown

  function meta(name) {
    const m = document.querySelector(`meta[name="${name}"]`);
    return (m && m.getAttribute("content")) || "";
  }
  const config = { url: meta("gateway-supabase-url"), anonKey: meta("gateway-supabase-anon-key") };
  const devToken = meta("gateway-dev-token");

  class AuthApiError extends Error {
    constructor(status, body) {
      const b = body || {};
      super(b.msg || b.error_description || b.message || b.error || "Supabase Auth answered HTTP " + status);
      this.status = status;
      this.code = b.error_code || b.error || "http_" + status;
    }
  }

  // -- the stored credential -------------------------------------------------------------------------

  function read() {
    try {
      const s = JSON.parse(localStorage.getItem(STORE) || "null");
      if (s && typeof s.access_token === "string" && (s.kind === "supabase" || s.kind === "token")) return s;
    } catch (_) {
      localStorage.removeItem(STORE); // unreadable: nothing to keep
    }
    const old = localStorage.getItem(OLD_STORE);
    if (old) {
      localStorage.removeItem(OLD_STORE);
      return write({ kind: "token", access_token: old });
    }
    return null;
  }

  function write(session) {
    if (session) localStorage.setItem(STORE, JSON.stringify(session));
    else localStorage.removeItem(STORE);
    schedule();
    emit();
    return session;
  }

  // What a token says about its user, for display only: the gateway verifies it on every request.
  function claims(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
    } catch (_) {
      return null;
    }
  }

  // {kind: "supabase" | "token" | "development" | "none", token, email, role, expiresAt}
  function current() {
    const s = read();
    const token = s ? s.access_token : devToken;
    const kind = s ? s.kind : devToken ? "development" : "none";
    const c = token ? claims(token) : null;
    return {
      kind, token,
      email: (s && s.email) || (c && (c.email || c.sub)) || "",
      role: (c && c.role) || "",
      expiresAt: (s && s.expires_at) || (c && c.exp) || null,
    };
  }

  function emit() {
    for (const fn of listeners) fn(current());
  }

  function onChange(fn) {
    listeners.add(fn);
    return () => listeners.delete(fn);
  }

  function takeNotice() {
    const n = notice;
    notice = null;
    return n;
  }

  // -- Supabase Auth's REST API ----------------------------------------------------------------------

  function enabled() {
    return Boolean(config.url && config.anonKey);
  }

  async function call(path, { method = "POST", body, token } = {}) {
    const headers = { apikey: config.anonKey };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (token) headers.authorization = "Bearer " + token;
    const resp = await fetch(config.url + "/auth/v1" + path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    if (resp.status !== 204) {
      try {
        data = await resp.json();
      } catch (_) {
        data = null; // Auth's 5xx pages may not be JSON
      }
    }
    if (!resp.ok) throw new AuthApiError(resp.status, data);
    return data;
  }

  function sessionFrom(data, email) {
    const c = claims(data.access_token) || {};
    const now = Math.floor(Date.now() / 1000);
    return {
      kind: "supabase",
      access_token: data.access_token,
      refresh_token: data.refresh_token,
      issued_at: Number(c.iat) || now,
      expires_at: Number(data.expires_at) || now + (Number(data.expires_in) || 3600),
      email: (data.user && data.user.email) || email || c.email || "",
    };
  }

  async function signInWithPassword(email, password) {
    const data = await call("/token?grant_type=password", { body: { email, password } });
    notice = null;
    write(sessionFrom(data, email));
  }

  // The link in the email leads to Auth's /verify, which sends the browser back here with the session in
  // the URL fragment (read by completeRedirect).
  async function sendMagicLink(email) {
    const back = location.origin + location.pathname;
    await call("/otp?redirect_to=" + encodeURIComponent(back), { body: { email, create_user: true } });
  }

  async function completeRedirect() {
    if (!location.hash || location.hash.length < 2) return;
    const params = new URLSearchParams(location.hash.slice(1));
    if (!params.has("access_token") && !params.has("error")) return;
    // The fragment holds the tokens: out of the address bar and the history at once.
    history.replaceState(null, "", location.pathname + location.search);
    if (params.has("error")) {
      notice = {
        code: params.get("error_code") || params.get("error"),
        message: params.get("error_description") || "the sign-in link did not work",
      };
      emit();
      return;
    }
    const data = Object.fromEntries(params);
    let email = "";
    try {
      email = (await call("/user", { method: "GET", token: data.access_token })).email || "";
    } catch (e) {
      notice = { code: e.code, message: "the sign-in link's session was refused: " + e.message };
      emit();
      return;
    }
    notice = null;
    write(sessionFrom(data, email));
  }

  function refreshDueAt(s) {
    const lifetime = Math.max(0, s.expires_at - (s.issued_at || s.expires_at - 3600));
    return s.expires_at - Math.min(MARGIN_S, lifetime / 4);
  }

  function schedule() {
    clearTimeout(timer);
    timer = null;
    const s = read();
    if (!s || s.kind !== "supabase" || !s.refresh_token) return;
    const wait = Math.max(0, refreshDueAt(s) * 1000 - Date.now());
    timer = setTimeout(() => refresh().catch(() => null), wait);
  }

  // One refresh at a time; a session another tab refreshed meanwhile is taken as it is (unless `force`:
  // the gateway said the current token has expired).
  function refresh(force = false) {
    if (!refreshing) {
      refreshing = (async () => {
        const s = read();
        if (!s || s.kind !== "supabase") return null;
        if (!force && Date.now() / 1000 < refreshDueAt(s)) return s;
        let data;
        try {
          data = await call("/token?grant_type=refresh_token", { body: { refresh_token: s.refresh_token } });
        } catch (e) {
          if (e.status >= 400 && e.status < 500) {
            forget({ code: e.code, message: "your session ended: " + e.message });
            return null;
          }
          clearTimeout(timer);
          timer = setTimeout(() => refresh().catch(() => null), RETRY_MS); // Auth unreachable: try again
          throw e;
        }
        return write(sessionFrom(data, s.email));
      })().finally(() => {
        refreshing = null;
      });
    }
    return refreshing;
  }

  // -- what the pages call ---------------------------------------------------------------------------

  // The token to send now: a Supabase session past its refresh point is refreshed first.
  async function bearer() {
    const s = read();
    if (s && s.kind === "supabase" && Date.now() / 1000 >= refreshDueAt(s)) {
      try {
        await refresh();
      } catch (_) {
        /* Auth unreachable: the current token may still be good; the gateway says if it is not */
      }
    }
    return current().token;
  }

  function usePastedToken(token) {
    notice = null;
    write({ kind: "token", access_token: token.trim() });
  }

  function forget(why) {
    notice = why || null;
    write(null);
  }

  async function signOut() {
    const s = read();
    notice = null;
    write(null);
    if (s && s.kind === "supabase" && enabled()) {
      try {
        await call("/logout", { token: s.access_token });
      } catch (_) {
        /* the session is gone from this browser either way; Auth expires it on its own */
      }
    }
  }

  // The gateway refused `sent`. An expired Supabase session is refreshed (true: send again); any other
  // refused credential is forgotten, with the gateway's reason, so a reload does not bring it back.
  async function refused(code, message, sent) {
    if (!REFUSED.has(code)) return false;
    const s = read();
    if (s && sent && s.access_token !== sent) return true; // already replaced meanwhile
    if (s && s.kind === "supabase" && code === "token_expired") {
      try {
        if (await refresh(true)) return true;
      } catch (_) {
        /* could not refresh: forget below */
      }
    }
    const why = { code, message: "the gateway refused your token: " + (message || code) };
    if (s) forget(why);
    else {
      notice = why; // the development token cannot be forgotten, only reported
      emit();
    }
    return false;
  }

  window.addEventListener("storage", (e) => {
    if (e.key === STORE) {
      schedule();
      emit();
    }
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") bearer();
  });
  schedule();

  return {
    enabled, current, onChange, takeNotice, claims, bearer, refused, completeRedirect,
    signInWithPassword, sendMagicLink, usePastedToken, signOut, REFUSED,
  };
})();
