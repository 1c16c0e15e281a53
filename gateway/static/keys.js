// "Your keys": each provider with the masked hint of the key you stored, and forms to add, replace or remove
// it through /v1/keys. A key typed here lives only in its field until the request that stores it leaves:
// the field is cleared at once and nothing of it is kept anywhere in the page.
"use strict";

const GatewayKeys = (() => {
  const { el } = Gateway;
  const BUILTIN = ["openai", "anthropic", "gemini"];
  const KEYLESS = new Set(["mock"]); // the built-in mock needs no key (as on the gateway)
  const NAMES = { openai: "OpenAI", anthropic: "Anthropic", gemini: "Google Gemini" };

  let box = null;
  let changed = () => {};
  let models = [];
  let stored = new Map(); // provider -> {hint, updated_at}

  function providers() {
    const seen = new Set(BUILTIN);
    for (const m of models) if (!KEYLESS.has(m.provider)) seen.add(m.provider);
    return [...seen];
  }

  function served(provider) {
    return models.some((m) => m.provider === provider && m.available);
  }

  function describe(provider) {
    const k = stored.get(provider);
    if (k) return el("span", { class: "key-hint", title: "updated " + k.updated_at }, "your key " + k.hint);
    if (served(provider)) return el("span", { class: "hint" }, "no key of yours: the gateway's is used");
    return el("span", { class: "hint" }, "no key");
  }

  function row(provider) {
    const id = "key-" + provider.replace(/[^a-z0-9-]/gi, "_");
    const has = stored.has(provider);
    const name = NAMES[provider] || provider;
    const input = el("input", {
      id, type: "password", autocomplete: "off", spellcheck: "false", autocapitalize: "off",
      placeholder: has ? "Paste a new key to replace it" : "Paste your " + name + " key", minlength: 8, required: true,
    });
    const error = el("p", { class: "notice key-error", role: "alert", hidden: true });
    const form = el("form", { class: "key-form", autocomplete: "off" },
      el("label", { class: "sr-only", for: id }, name + " API key"),
      input,
      el("button", { type: "submit", "data-action": "save" }, has ? "Replace" : "Save"),
      has ? el("button", { type: "button", class: "danger", "data-action": "delete" }, "Remove") : null);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const value = input.value.trim();
      input.value = ""; // out of the page before the request even leaves
      if (value) act(form, error, () => Gateway.api("/v1/keys/" + encodeURIComponent(provider), {
        method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ api_key: value }),
      }));
    });
    const del = form.querySelector('[data-action="delete"]');
    if (del) del.addEventListener("click", () => act(form, error, () => Gateway.api("/v1/keys/" + encodeURIComponent(provider), { method: "DELETE" })));
    return el("li", { "data-provider": provider, "data-has-key": has ? "true" : "false" },
      el("div", { class: "key-head" }, el("strong", {}, name), describe(provider)), form, error);
  }

  async function act(form, error, request) {
    for (const b of form.querySelectorAll("button")) b.disabled = true;
    error.hidden = true;
    try {
      await request();
      await refresh();
      changed(); // the model list follows at once
    } catch (e) {
      error.textContent = e.message + (e.code ? " (" + e.code + ")" : "");
      error.hidden = false;
      for (const b of form.querySelectorAll("button")) b.disabled = false;
    }
  }

  function render() {
    if (!box) return;
    box.replaceChildren(...providers().map(row));
  }

  async function refresh() {
    try {
      const data = (await Gateway.api("/v1/keys")).data;
      stored = new Map(data.map((k) => [k.provider, k]));
      render();
    } catch (e) {
      stored = new Map();
      box.replaceChildren(el("li", { class: "notice" },
        e.status === 401 ? "Sign in to manage your keys." : "Could not load your keys: " + e.message + " (" + e.code + ")"));
    }
  }

  // Mount into a list element; onChange runs after a key was stored or removed.
  function mount(list, onChange) {
    box = list;
    changed = onChange;
  }

  // The page's model list (from GET /v1/models): which providers exist and which are served without a key.
  function setModels(list) {
    models = list;
    render();
  }

  return { mount, refresh, setModels };
})();
