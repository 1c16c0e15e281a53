"""What the fallback tests through the real SDKs share: the three adapters on one emulator, provider pairs, keys,
and a reader for the conversation a recorded request carried."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from providers.anthropic import AnthropicProvider
from providers.base import ChatRequest, Credential, Message
from providers.catalog import Catalog, ModelSpec
from providers.gemini import GeminiProvider
from providers.openai import OpenAIProvider
from tests.emulators import Emulator, RecordedRequest

PROVIDERS = ("openai", "anthropic", "gemini")
PAIRS = [(a, b) for a in PROVIDERS for b in PROVIDERS]
FIRST = {"openai": "gpt-5-mini", "anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.5-flash"}
# A same-provider pair falls back to the provider's other model.
SECOND_SAME = {"openai": "gpt-5", "anthropic": "claude-opus-4-1", "gemini": "gemini-2.5-pro"}

QUESTION = "Tell me about foxes."
REQUEST = ChatRequest((Message("system", "Be brief."), Message("user", QUESTION)), max_tokens=200)
CATALOG = Catalog.build()


class OperatorKeys:
    async def credential(self, provider: str) -> Credential | None:
        return Credential(f"test-key-{provider}", source="operator")


@asynccontextmanager
async def sdk_adapters(emu: Emulator) -> AsyncIterator[dict[str, Any]]:
    """The OpenAI, Anthropic and Gemini adapters (official SDKs, unpatched) pointed at `emu`."""
    made: dict[str, Any] = {
        "openai": OpenAIProvider(base_url=emu.openai_base_url),
        "anthropic": AnthropicProvider(base_url=emu.anthropic_base_url),
        "gemini": GeminiProvider(base_url=emu.gemini_base_url),
    }
    try:
        yield made
    finally:
        await asyncio.gather(*(p.aclose() for p in made.values()))


def chain_for(p1: str, p2: str) -> list[ModelSpec]:
    second = FIRST[p2] if p1 != p2 else SECOND_SAME[p2]
    return [CATALOG.resolve(FIRST[p1]), CATALOG.resolve(second)]


def turns(rec: RecordedRequest) -> list[tuple[str, str]]:
    """The conversation a recorded request carried, as (role, text) in our vocabulary, system left out."""
    body = rec.body
    out: list[tuple[str, str]] = []
    if rec.provider == "gemini":
        for c in body["contents"]:
            role = "assistant" if c["role"] == "model" else "user"
            out.append((role, "".join(p.get("text", "") for p in c["parts"])))
        return out
    for m in body["messages"]:
        if m["role"] == "system":
            continue
        content = m["content"]
        text = content if isinstance(content, str) else "".join(b.get("text", "") for b in content)
        out.append((m["role"], text))
    return out


def requests_for(emu: Emulator, model: str) -> list[RecordedRequest]:
    return [r for r in emu.requests if r.model == model]
