"""Prompt caching, passed through and priced: Anthropic `cache_control` markers sent through the Chat Completions
face reach the Anthropic emulator unchanged, and the cache reads and writes it reports are billed at their own
rates and visible in the stream's events, `GET /v1/usage` and the ledger."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest
from anthropic import AsyncAnthropic
from openai import AsyncOpenAI

from tests.conftest import Live
from tests.emulators import Emulator, Script
from tests.test_providers_gateway import emulated

EPHEMERAL = {"type": "ephemeral"}
HOUR = {"type": "ephemeral", "ttl": "1h"}
# Claude Sonnet 4.5's published prices (USD per million tokens): input, cache read, cache write, output.
SONNET = {"input": Decimal(3), "read": Decimal("0.30"), "write": Decimal("3.75"), "output": Decimal(15)}
CACHED = Script(text=("Cached", " answer."), input_tokens=5000, cached_tokens=2000, cache_creation_tokens=1000)


def sonnet_cost(inp: int, read: int, write: int, out: int) -> Decimal:
    plain = inp - read - write
    return (
        plain * SONNET["input"] + read * SONNET["read"] + write * SONNET["write"] + out * SONNET["output"]
    ) / 1_000_000


@pytest.fixture
async def gw(live_factory: Callable[..., Any], emu: Emulator) -> AsyncIterator[Live]:
    emu.reset()
    live: Live = await live_factory(**emulated(emu))
    yield live


async def usage_of(live: Live) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=live.url, headers=live.headers(), timeout=10) as c:
        r = await c.get("/v1/usage", params={"recent": 5})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_chat_completions_markers_reach_anthropic_unchanged_and_are_priced(gw: Live, emu: Emulator) -> None:
    emu.script(CACHED, model="claude-sonnet-4-5")
    long_rules = "You answer from the handbook. " * 40
    messages: Any = [
        {"role": "system", "content": [{"type": "text", "text": long_rules, "cache_control": EPHEMERAL}]},
        {"role": "user", "content": "What does chapter 1 say?"},
        {"role": "assistant", "content": "It introduces the gateway."},
        {"role": "user", "content": "And chapter 2?", "cache_control": HOUR},
    ]
    tools: Any = [
        {
            "type": "function",
            "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
            "cache_control": EPHEMERAL,
        }
    ]
    async with AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=gw.token, max_retries=0, timeout=20) as sdk:
        resp = await sdk.chat.completions.create(
            model="claude-sonnet-4-5", messages=messages, tools=tools, extra_body={"fallbacks": []}
        )
    assert resp.choices[0].message.content == "Cached answer."

    (rec,) = [r for r in emu.requests if r.provider == "anthropic"]
    assert rec.rejected is None, rec.rejected
    body = rec.body
    assert body["system"] == [{"type": "text", "text": long_rules, "cache_control": EPHEMERAL}]
    assert body["messages"][-1] == {
        "role": "user",
        "content": [{"type": "text", "text": "And chapter 2?", "cache_control": HOUR}],
    }
    assert all("cache_control" not in str(m) for m in body["messages"][:-1])
    assert body["tools"][0]["cache_control"] == EPHEMERAL

    expected = sonnet_cost(5000, 2000, 1000, 2)
    seg = resp.model_extra["gateway"]["segments"][0]  # type: ignore[index]
    assert (seg["input_tokens"], seg["cached_input_tokens"], seg["cache_write_input_tokens"]) == (5000, 2000, 1000)
    assert Decimal(seg["cost_usd"]) == expected

    usage = await usage_of(gw)
    totals = usage["totals"]
    assert (totals["input_tokens"], totals["cached_input_tokens"], totals["cache_write_input_tokens"]) == (
        5000,
        2000,
        1000,
    )
    assert Decimal(totals["cost_usd"]) == expected
    (model,) = usage["by_model"]
    assert (model["model"], model["cache_write_input_tokens"]) == ("claude-sonnet-4-5", 1000)
    (row,) = usage["recent"]
    assert (row["cached_input_tokens"], row["cache_write_input_tokens"]) == (2000, 1000)
    assert row["segments"][0]["cache_write_input_tokens"] == 1000


async def test_a_marker_the_anthropic_api_would_refuse_is_refused_at_the_door(gw: Live, emu: Emulator) -> None:
    bad: Any = [{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "forever"}}]}]
    async with httpx.AsyncClient(base_url=gw.url, headers=gw.headers(), timeout=10) as c:
        r = await c.post("/v1/chat/completions", json={"model": "claude-sonnet-4-5", "messages": bad})
    assert r.status_code in (400, 422), r.text
    assert r.json()["error"]["message"] == "messages[0].content[0].cache_control.type: Input should be 'ephemeral'"
    assert emu.requests == []


async def test_markers_are_not_sent_where_the_provider_caches_on_its_own(gw: Live, emu: Emulator) -> None:
    messages: Any = [{"role": "user", "content": [{"type": "text", "text": "hello", "cache_control": EPHEMERAL}]}]
    async with AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=gw.token, max_retries=0, timeout=20) as sdk:
        for model in ("gpt-5-mini", "gemini-2.5-flash"):
            await sdk.chat.completions.create(model=model, messages=messages, extra_body={"fallbacks": []})
    assert [r.provider for r in emu.requests] == ["openai", "gemini"]
    assert all(r.rejected is None and "cache_control" not in str(r.body) for r in emu.requests)


async def test_messages_markers_reach_anthropic_unchanged_and_usage_says_what_was_cached(
    gw: Live, emu: Emulator
) -> None:
    emu.script(CACHED, CACHED, model="claude-sonnet-4-5")
    system: Any = [
        {"type": "text", "text": "You answer from the handbook."},
        {"type": "text", "text": "The handbook: " + "chapter. " * 200, "cache_control": HOUR},
    ]
    messages: Any = [
        {"role": "user", "content": "Look up chapter 1."},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"chapter": 1}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": "Chapter 1: foxes.",
                    "cache_control": EPHEMERAL,
                },
                {"type": "text", "text": "Summarise it."},
            ],
        },
    ]
    tools: Any = [{"name": "lookup", "input_schema": {"type": "object", "properties": {}}, "cache_control": EPHEMERAL}]
    call: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 200,
        "system": system,
        "messages": messages,
        "tools": tools,
        "extra_body": {"fallbacks": []},
    }
    async with AsyncAnthropic(base_url=gw.url, api_key=gw.token, max_retries=0, timeout=20) as sdk:
        msg = await sdk.messages.create(**call)
        async with sdk.messages.stream(**call) as stream:
            streamed = await stream.get_final_message()

    # Every marker where it was put; the rest as the adapter always writes it (a plain string as a text block, a
    # tool's description even when empty), which means the same to the API.
    as_blocks = [{"role": "user", "content": [{"type": "text", "text": "Look up chapter 1."}]}, *messages[1:]]
    described = [{"description": "", **tools[0]}]
    for rec in emu.requests:
        assert rec.rejected is None, rec.rejected
        assert (rec.body["system"], rec.body["messages"], rec.body["tools"]) == (system, as_blocks, described)

    # Anthropic's own accounting: input_tokens is what was neither read from nor written to the cache.
    for usage in (msg.usage, streamed.usage):
        assert (usage.input_tokens, usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (
            2000,
            2000,
            1000,
        )
    expected = sonnet_cost(5000, 2000, 1000, 2)
    assert Decimal(msg.model_extra["gateway"]["cost_usd"]) == expected  # type: ignore[index]
    totals = (await usage_of(gw))["totals"]
    assert (totals["cached_input_tokens"], totals["cache_write_input_tokens"]) == (4000, 2000)
    assert Decimal(totals["cost_usd"]) == 2 * expected


async def test_one_hour_cache_writes_are_priced_at_their_own_rate(gw: Live, emu: Emulator) -> None:
    """Anthropic says how many of the written tokens were written for an hour; those cost $6 a million on Claude
    Sonnet 4.5, not the five-minute $3.75."""
    hour = Script(
        text=("Kept.",), input_tokens=5000, cached_tokens=2000, cache_creation_tokens=1000, cache_creation_1h_tokens=600
    )
    emu.script(hour, model="claude-sonnet-4-5")
    system: Any = [{"type": "text", "text": "The handbook: " + "chapter. " * 200, "cache_control": HOUR}]
    async with AsyncAnthropic(base_url=gw.url, api_key=gw.token, max_retries=0, timeout=20) as sdk:
        msg = await sdk.messages.create(
            model="claude-sonnet-4-5",
            max_tokens=100,
            system=system,
            messages=[{"role": "user", "content": "Chapter 1?"}],
            extra_body={"fallbacks": []},
        )
    expected = sonnet_cost(5000, 2000, 1000, 1) + 600 * (Decimal(6) - SONNET["write"]) / 1_000_000
    assert Decimal(msg.model_extra["gateway"]["cost_usd"]) == expected  # type: ignore[index]
    assert Decimal((await usage_of(gw))["totals"]["cost_usd"]) == expected
