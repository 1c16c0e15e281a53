"""The real provider adapters, built from settings: base URLs, and OpenAI-compatible servers.

`GATEWAY_COMPATIBLE_SERVERS` is a JSON list; each server becomes a provider of its own name:

    [{"name": "ollama", "base_url": "http://127.0.0.1:11434/v1", "models": ["llama3.1"]},
     {"name": "groq", "base_url": "https://api.groq.com/openai/v1", "api_key_env": "GROQ_API_KEY",
      "models": [{"id": "groq-llama", "upstream": "llama-3.1-8b-instant", "context_window": 131072,
                  "price": {"input": 0.05, "output": 0.08}}]},
     {"name": "azure", "base_url": "https://RESOURCE.openai.azure.com/openai/v1", "key_header": "api-key",
      "api_key_env": "AZURE_OPENAI_API_KEY", "models": ["gpt-4o"]}]

Optional per server: `kind` (only `openai_compatible`), `api_key` or `api_key_env` (served to every user:
the operator chose to offer that server; none means the server needs no key), `max_tokens_field` (default
`max_tokens`), `include_usage` (default true), `headers` (extra request headers), `key_header` (send the key
in this header instead of `Authorization: Bearer`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from gateway.heap import frozen_after
from gateway.settings import Settings
from providers.base import Provider
from providers.lazy import LazyProvider

RESERVED = frozenset({"openai", "anthropic", "gemini", "mock"})


class CompatibleServerError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class CompatibleServer:
    name: str
    base_url: str
    models: tuple[dict[str, Any], ...]
    api_key: str | None = None
    max_tokens_field: str = "max_tokens"
    include_usage: bool = True
    headers: dict[str, str] = field(default_factory=dict)
    key_header: str | None = None


def compatible_servers(settings: Settings) -> list[CompatibleServer]:
    servers: list[CompatibleServer] = []
    for raw in settings.compatible_servers():
        if not isinstance(raw, dict):
            raise CompatibleServerError("each GATEWAY_COMPATIBLE_SERVERS entry must be an object")
        name, base_url = raw.get("name"), raw.get("base_url")
        if not isinstance(name, str) or not name or name in RESERVED:
            raise CompatibleServerError(f"a compatible server needs a 'name' other than {sorted(RESERVED)}")
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise CompatibleServerError(f"compatible server {name!r} needs an http(s) 'base_url'")
        if raw.get("kind", "openai_compatible") != "openai_compatible":
            raise CompatibleServerError(f"compatible server {name!r}: the only kind is 'openai_compatible'")
        key = raw.get("api_key")
        if key is None and raw.get("api_key_env"):
            key = os.environ.get(str(raw["api_key_env"]))
        models: list[dict[str, Any]] = []
        for m in raw.get("models", []):
            entry = {"id": m} if isinstance(m, str) else dict(m)
            if "id" not in entry:
                raise CompatibleServerError(f"a model of compatible server {name!r} needs an 'id'")
            entry["provider"] = name
            models.append(entry)
        servers.append(
            CompatibleServer(
                name=name,
                base_url=base_url.rstrip("/"),
                models=tuple(models),
                api_key=str(key) if key else None,
                max_tokens_field=str(raw.get("max_tokens_field", "max_tokens")),
                include_usage=bool(raw.get("include_usage", True)),
                headers={str(k): str(v) for k, v in dict(raw.get("headers", {})).items()},
                key_header=str(raw["key_header"]) if raw.get("key_header") else None,
            )
        )
    return servers


def compatible_model_entries(settings: Settings) -> list[dict[str, Any]]:
    """Catalog entries for the compatible servers' models (GATEWAY_MODELS may still override them)."""
    return [m for server in compatible_servers(settings) for m in server.models]


def compatible_credentials(settings: Settings) -> dict[str, str]:
    """Server name -> key ("" for servers that need none): offered to every user."""
    return {s.name: s.api_key or "" for s in compatible_servers(settings)}


# The adapters import their SDKs; they are imported when first used (see providers/lazy.py).


def _openai(settings: Settings) -> Provider:
    from providers.openai import OpenAIProvider

    return OpenAIProvider("openai", settings.openai_base_url)


def _anthropic(settings: Settings) -> Provider:
    from providers.anthropic import AnthropicProvider

    return AnthropicProvider(settings.anthropic_base_url)


def _gemini(settings: Settings) -> Provider:
    from providers.gemini import GeminiProvider

    return GeminiProvider(settings.gemini_base_url)


def _compatible(server: CompatibleServer) -> Provider:
    from providers.openai import OpenAIProvider

    return OpenAIProvider(
        server.name,
        server.base_url,
        max_tokens_field=server.max_tokens_field,
        include_usage=server.include_usage,
        default_key=server.api_key,
        extra_headers=server.headers,
        key_header=server.key_header,
    )


def build_upstream_providers(settings: Settings) -> dict[str, Provider]:
    builds: dict[str, Callable[[], Provider]] = {
        "openai": partial(_openai, settings),
        "anthropic": partial(_anthropic, settings),
        "gemini": partial(_gemini, settings),
    }
    for server in compatible_servers(settings):
        builds[server.name] = partial(_compatible, server)
    # Each SDK is imported at its provider's first stream, then frozen out of the collector (gateway.heap).
    return {name: LazyProvider(name, frozen_after(build)) for name, build in builds.items()}
