"""Smoke test against the real provider APIs. Skipped unless asked for with real keys:

    GATEWAY_REAL_KEY_TESTS=1 REAL_OPENAI_API_KEY=... REAL_ANTHROPIC_API_KEY=... REAL_GEMINI_API_KEY=... \
        python -m pytest -q tests/test_providers_real.py

(The usual *_API_KEY variables are cleared for every test run so a developer's keys never leak into tests;
these separate names make using a real key a deliberate act.)
"""

from __future__ import annotations

import os

import pytest

from providers.anthropic import AnthropicProvider
from providers.base import ChatRequest, Credential, Message, Provider
from providers.events import Finish, TextDelta, Usage
from providers.gemini import GeminiProvider
from providers.openai import OpenAIProvider

ENABLED = os.environ.get("GATEWAY_REAL_KEY_TESTS") == "1"
CASES = [
    ("openai", "REAL_OPENAI_API_KEY", "gpt-5-mini"),
    ("anthropic", "REAL_ANTHROPIC_API_KEY", "claude-sonnet-4-5"),
    ("gemini", "REAL_GEMINI_API_KEY", "gemini-2.5-flash"),
]


def _provider(name: str) -> Provider:
    if name == "openai":
        return OpenAIProvider("openai")
    if name == "anthropic":
        return AnthropicProvider()
    return GeminiProvider()


@pytest.mark.parametrize(("name", "env", "model"), CASES)
async def test_real_provider_streams_text_usage_and_finish(name: str, env: str, model: str) -> None:
    key = os.environ.get(env)
    if not ENABLED or not key:
        pytest.skip(f"real-key smoke test: set GATEWAY_REAL_KEY_TESTS=1 and {env}")
    provider = _provider(name)
    request = ChatRequest((Message("user", "Reply with the single word: pong"),), max_tokens=256)
    try:
        events = [ev async for ev in provider.stream(request, model, Credential(key))]
    finally:
        await provider.aclose()
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert "pong" in text.lower()
    usage = [e for e in events if isinstance(e, Usage)]
    assert usage and usage[-1].input_tokens > 0 and usage[-1].output_tokens > 0
    assert isinstance(events[-1], Finish)
