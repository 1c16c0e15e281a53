"""What the router hands on besides answer text, through the real SDK adapters: thinking and log probabilities
reach the stream as their own events, and a fallback that would answer in another shape is skipped by name."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from providers.backoff import Backoff
from providers.base import ChatRequest, Message, Reasoning, ResponseFormat
from providers.breaker import NoBreaker
from providers.catalog import Catalog, spec_from_config
from providers.events import LogprobsDelta, ReasoningDelta
from providers.router import ModelSkipped, Router
from tests.emulators import Emulator, Script
from tests.support.fallback import OperatorKeys
from tests.support.scripted import run

CATALOG = Catalog.build()
ASK = ChatRequest((Message("user", "What is the capital of France?"),), max_tokens=300)


@pytest.fixture
def router(emu: Emulator, adapters: dict[str, Any]) -> Router:
    emu.reset()
    return Router(adapters, breaker=NoBreaker(), backoff=Backoff(max_retries=0))


async def test_thinking_reaches_the_stream_as_its_own_event(emu: Emulator, router: Router) -> None:
    emu.script(Script(text=("Paris",), thinking=("The capital ", "is Paris.")))
    out = await run(
        router, [CATALOG.resolve("claude-sonnet-4-5")], replace(ASK, reasoning=Reasoning("low"), max_tokens=None), None
    )
    assert out.error is None and out.text == "Paris"
    assert "".join(e.text for e in out.of(ReasoningDelta)) == "The capital is Paris."


async def test_log_probabilities_reach_the_stream_when_asked(emu: Emulator, router: Router) -> None:
    spec = spec_from_config({"id": "gpt-4.1-mini", "provider": "openai"})
    out = await run(router, [spec], replace(ASK, logprobs=True, top_logprobs=1), OperatorKeys())
    assert out.error is None
    assert [t.token for d in out.of(LogprobsDelta) for t in d.tokens] == ["Hello", " world", "!"]


async def test_a_fallback_without_structured_output_is_skipped_by_name(emu: Emulator, router: Router) -> None:
    first = CATALOG.resolve("gpt-5-mini")
    plain = spec_from_config(
        {"id": "plain", "provider": "openai", "upstream": "gpt-4.1-mini", "capabilities": {"json_schema": "none"}}
    )
    asked = replace(ASK, response_format=ResponseFormat.json_schema("city", {"type": "object"}))
    emu.script(Script(status=503), model=first.upstream)
    out = await run(router, [first, plain], asked, OperatorKeys())
    assert out.error is not None and out.error.code == "all_models_failed"
    assert [(s.model.id, s.reason) for s in out.of(ModelSkipped)] == [("plain", "cannot_honour")]
    assert not [r for r in emu.requests if r.model == "gpt-4.1-mini"]
