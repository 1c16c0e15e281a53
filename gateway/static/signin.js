// The account button in the top bar and its dialog, the same on both pages: sign in with Supabase Auth
// (email and password, or a magic link), use an access token, use the development token, sign out; and why
// the last token was refused, when it was.
"use strict";

const GatewaySignIn = (() => {
  const { el } = Gateway;
  const $ = (id) => document.getElementById(id);

  function field(id, label, attrs) {
    return el("div", { class: "field" }, el("label", { for: id }, label), el("input", Object.assign({ id, name: id }, attrs)));
  }

  function build() {
    const supabase = GatewayAuth.enabled();
    const password = el("form", { id: "password-form", class: "stack", hidden: !supabase, autocomplete: "on" },
      field("email", "Email", { type: "email", autocomplete: "email", required: true, inputmode: "email" }),
      field("password", "Password", { type: "password", autocomplete: "current-password" }),
      el("div", { class: "row" },
        el("button", { type: "submit", class: "primary", id: "password-signin" }, "Sign in"),
        el("button", { type: "button", id: "magic-link" }, "Email me a sign-in link")),
      el("p", { id: "auth-status", class: "hint", role: "status" }));
    const token = el("details", { id: "token-box", open: !supabase },
      el("summary", {}, "Use an access token"),
      el("form", { id: "signin", class: "stack", autocomplete: "off" },
        field("token", "Access token", { type: "password", autocomplete: "off", spellcheck: "false" }),
        el("div", { class: "row" }, el("button", { type: "submit" }, "Use this token"))),
      el("p", { class: "hint" }, supabase
        ? "A Supabase access token (or a service-role token, for the dashboard's “All users”)."
        : "A Supabase access token from your project's Auth API (see the README: “Where the token comes from”)."));
    return el("dialog", { id: "account", class: "account-dialog", "aria-labelledby": "account-title" },
      el("div", { class: "dialog-head" },
        el("h2", { id: "account-title" }, "Sign in"),
        el("button", { type: "button", id: "account-close", class: "icon", "aria-label": "Close" }, "✕")),
      el("p", { id: "auth-notice", class: "notice", role: "alert", hidden: true }),
      el("p", { id: "auth-who", class: "hint" }),
      password,
      token,
      el("div", { class: "row" }, el("button", { type: "button", id: "signout", hidden: true }, "Sign out")));
  }

  const LABELS = { supabase: "", token: " (pasted token)", development: " (development token)" };

  // True when it has a refusal to tell.
  function show() {
    const who = GatewayAuth.current();
    const button = $("who");
    const signedIn = who.kind !== "none";
    if (signedIn) button.replaceChildren(el("span", {}, who.email || "signed in"), el("span", { class: "who-kind" }, LABELS[who.kind]));
    else button.textContent = "Sign in";
    button.dataset.state = signedIn ? "signed-in" : "signed-out";
    button.title = signedIn ? "Account: " + button.textContent : "Sign in";
    $("account-title").textContent = signedIn ? "Account" : "Sign in";
    $("auth-who").textContent = signedIn
      ? "Signed in as " + (who.email || "a token's user") + LABELS[who.kind] + "."
      : "Not signed in.";
    $("signout").hidden = who.kind !== "supabase" && who.kind !== "token";
    $("signout").textContent = who.kind === "token" ? "Forget this token" : "Sign out";
    const notice = GatewayAuth.takeNotice();
    if (!notice) return false;
    $("auth-notice").textContent = "Signed out: " + notice.message + (notice.code ? " (" + notice.code + ")" : "");
    $("auth-notice").hidden = false;
    return true;
  }

  function status(text, bad) {
    const box = $("auth-status");
    box.textContent = text;
    box.classList.toggle("error", Boolean(bad));
  }

  function open() {
    const d = $("account");
    if (!d.open) d.showModal();
  }

  function close() {
    const d = $("account");
    if (d.open) d.close();
  }

  async function withBusy(button, work) {
    button.disabled = true;
    try {
      await work();
    } finally {
      button.disabled = false;
    }
  }

  function wire(onChange) {
    $("who").addEventListener("click", open);
    $("account-close").addEventListener("click", close);
    $("password-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const email = $("email").value.trim();
      const password = $("password").value;
      $("password").value = "";
      withBusy($("password-signin"), async () => {
        status("Signing in…");
        try {
          await GatewayAuth.signInWithPassword(email, password);
          status("");
          $("auth-notice").hidden = true;
          close();
        } catch (err) {
          status("Sign-in failed: " + err.message + (err.code ? " (" + err.code + ")" : ""), true);
        }
      });
    });
    $("magic-link").addEventListener("click", () => {
      const email = $("email").value.trim();
      if (!$("email").checkValidity() || !email) {
        status("Enter your email address first.", true);
        $("email").focus();
        return;
      }
      withBusy($("magic-link"), async () => {
        status("Sending…");
        try {
          await GatewayAuth.sendMagicLink(email);
          status("Check your inbox: a sign-in link is on its way to " + email + ".");
        } catch (err) {
          status("Could not send the link: " + err.message + (err.code ? " (" + err.code + ")" : ""), true);
        }
      });
    });
    $("signin").addEventListener("submit", (e) => {
      e.preventDefault();
      const value = $("token").value.trim();
      $("token").value = "";
      if (!value) return;
      $("auth-notice").hidden = true;
      GatewayAuth.usePastedToken(value);
      close();
    });
    $("signout").addEventListener("click", () => {
      $("auth-notice").hidden = true;
      GatewayAuth.signOut();
    });
    let last = GatewayAuth.current().token;
    GatewayAuth.onChange((who) => {
      if (show()) open();
      if (who.token !== last) {
        const signedInAnew = !last || !who.token || GatewayAuth.claims(last)?.sub !== GatewayAuth.claims(who.token)?.sub;
        last = who.token;
        onChange(who, signedInAnew);
      }
    });
  }

  // onChange(who, newUser): the credential changed; newUser is false for a refresh of the same session.
  async function mount(onChange) {
    document.body.append(build());
    wire(onChange);
    await GatewayAuth.completeRedirect();
    if (show() || GatewayAuth.current().kind === "none") open();
  }

  return { mount, open };
})();
