"""The gateway streams real models (OpenAI, Anthropic, Gemini SDKs) pointed at the emulator, end to end."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest
import websockets

from providers.catalog import Price
from providers.events import Usage
from providers.pricing import _from_price
from tests.conftest import Live
from tests.emulators import Emulator, Script

pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator() as e:
        yield e


def emulated(emu: Emulator, **extra: Any) -> dict[str, Any]:
    return {
        "openai_base_url": emu.openai_base_url,
        "anthropic_base_url": emu.anthropic_base_url,
        "gemini_base_url": emu.gemini_base_url,
        "openai_api_key": "sk-operator-openai",
        "anthropic_api_key": "sk-operator-anthropic",
        "gemini_api_key": "operator-gemini",
        "gateway_allow_operator_keys": True,
        **extra,
    }


async def ws_stream(live: Live, frame: dict[str, Any], timeout: float = 20) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=live.headers()) as ws:
        await ws.send(json.dumps({"type": "chat.start", "id": "c1", **frame}))
        async with asyncio.timeout(timeout):
            while True:
                ev = json.loads(await ws.recv())
                if ev.get("id") != "c1":
                    continue
                events.append(ev)
                if ev["type"] in ("done", "error"):
                    return events


@pytest.mark.parametrize(
    ("model", "provider", "price"),
    [
        ("gpt-5-mini", "openai", Price(Decimal("0.25"), Decimal("2"), Decimal("0.025"))),
        ("claude-sonnet-4-5", "anthropic", Price(Decimal("3"), Decimal("15"), Decimal("0.30"))),
        ("gemini-2.5-flash", "gemini", Price(Decimal("0.30"), Decimal("2.50"), Decimal("0.03"))),
    ],
)
async def test_websocket_stream_delivers_emulator_text_with_usage_and_cost(
    live_factory: Callable[..., Any], emu: Emulator, model: str, provider: str, price: Price
) -> None:
    live: Live = await live_factory(**emulated(emu))
    pieces = ("Bonjour", " à", " tous", " 👋", " — fin.")
    emu.script(Script(text=pieces, input_tokens=1200, output_tokens=5, cached_tokens=200), model=model)
    events = await ws_stream(
        live, {"model": model, "messages": [{"role": "user", "content": "say hi"}], "max_tokens": 100}
    )
    assert events[-1]["type"] == "done", events[-1]
    assert "".join(e["text"] for e in events if e["type"] == "delta") == "".join(pieces)
    done = events[-1]
    assert done["finish_reason"] == "stop"
    assert done["usage"]["input_tokens"] == 1200 and done["usage"]["output_tokens"] == 5
    # The published price for that usage (cached input at its own rate).
    expected = _from_price(price, Usage(1200, 5, 200))
    assert Decimal(str(done["cost_usd"])) == pytest.approx(expected, rel=Decimal("1e-6"))
    started = next(e for e in events if e["type"] == "stream.started")
    assert started["provider"] == provider
    rec = next(r for r in emu.requests if r.model == model)
    assert rec.provider == provider and rec.completed
    assert rec.key_suffix == {"openai": "enai", "anthropic": "opic", "gemini": "mini"}[provider]


async def test_model_without_key_is_unavailable(live_factory: Callable[..., Any], emu: Emulator) -> None:
    live: Live = await live_factory(**emulated(emu, gateway_allow_operator_keys=False))
    async with httpx.AsyncClient() as client:
        models = (await client.get(f"{live.url}/v1/models", headers=live.headers())).json()["data"]
    by_id = {m["id"]: m for m in models}
    assert by_id["gpt-5-mini"]["available"] is False and by_id["gpt-5-mini"]["unavailable_reason"] == "no_key"
    events = await ws_stream(
        live, {"model": "gpt-5-mini", "fallbacks": [], "messages": [{"role": "user", "content": "x"}]}
    )
    assert events[-1]["type"] == "error" and events[-1]["code"] == "no_key"
    assert emu.requests == []


async def test_compatible_server_streams_with_its_own_models(live_factory: Callable[..., Any], emu: Emulator) -> None:
    servers = [
        {
            "name": "local-llm",
            "base_url": emu.openai_base_url,
            "models": [{"id": "llama-local", "upstream": "llama3.1:8b", "price": {"input": 1, "output": 2}}],
            "headers": {"x-team": "blue"},
        }
    ]
    live: Live = await live_factory(gateway_compatible_servers=json.dumps(servers))
    emu.script(Script(text=("from", " llama"), input_tokens=10, output_tokens=2), model="llama3.1:8b")
    events = await ws_stream(
        live,
        {"model": "llama-local", "fallbacks": [], "messages": [{"role": "user", "content": "hi"}], "max_tokens": 9},
    )
    assert events[-1]["type"] == "done", events[-1]
    assert "".join(e["text"] for e in events if e["type"] == "delta") == "from llama"
    assert Decimal(str(events[-1]["cost_usd"])) == Decimal("0.000014")
    rec = emu.last
    assert rec.model == "llama3.1:8b" and rec.headers["x-team"] == "blue"
    assert rec.body["max_tokens"] == 9 and "max_completion_tokens" not in rec.body


async def test_midstream_drop_continues_on_another_provider(live_factory: Callable[..., Any], emu: Emulator) -> None:
    live: Live = await live_factory(**emulated(emu))
    emu.script(Script(text=("One,", " two,", " three"), drop_after=2), model="gpt-5-mini")
    emu.script(Script(text=(" three,", " four."), input_tokens=30, output_tokens=2), model="claude-sonnet-4-5")
    events = await ws_stream(
        live,
        {
            "model": "gpt-5-mini",
            "fallbacks": ["claude-sonnet-4-5"],
            "messages": [{"role": "user", "content": "count to four"}],
        },
    )
    assert events[-1]["type"] == "done", events[-1]
    fallback = next(e for e in events if e["type"] == "fallback")
    assert fallback["from_model"] == "gpt-5-mini" and fallback["to_model"] == "claude-sonnet-4-5"
    assert fallback["reason"] == "connection_lost"
    assert "".join(e["text"] for e in events if e["type"] == "delta") == "One, two, three, four."
    # Claude continued from the partial answer as an assistant prefill.
    claude = next(r for r in emu.requests if r.model == "claude-sonnet-4-5")
    assert claude.body["messages"][-1]["role"] == "assistant"
    assert claude.body["messages"][-1]["content"][0]["text"] == "One, two,"


async def test_client_cancel_closes_the_upstream_request(live_factory: Callable[..., Any], emu: Emulator) -> None:
    live: Live = await live_factory(**emulated(emu))
    emu.script(Script(text=tuple(f" w{i}" for i in range(200)), delay=0.02), model="gemini-2.5-flash")
    async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=live.headers()) as ws:
        await ws.send(
            json.dumps(
                {
                    "type": "chat.start",
                    "id": "c1",
                    "model": "gemini-2.5-flash",
                    "fallbacks": [],
                    "messages": [{"role": "user", "content": "go on"}],
                }
            )
        )
        async with asyncio.timeout(20):
            deltas = 0
            while deltas < 3:
                ev = json.loads(await ws.recv())
                deltas += ev.get("type") == "delta"
            await ws.send(json.dumps({"type": "chat.cancel", "id": "c1"}))
            assert await emu.wait_disconnect(timeout=5)
            while True:
                ev = json.loads(await ws.recv())
                if ev.get("type") in ("done", "error"):
                    break
    rec = emu.last
    assert rec.model == "gemini-2.5-flash" and not rec.completed and rec.tokens_sent < 200


async def test_azure_style_server_sends_its_key_in_its_own_header(
    live_factory: Callable[..., Any], emu: Emulator
) -> None:
    servers = [
        {
            "name": "azure",
            "kind": "openai_compatible",
            "base_url": emu.openai_base_url,
            "key_header": "api-key",
            "api_key": "azure-secret-7777",
            "max_tokens_field": "max_completion_tokens",
            "models": [{"id": "azure-gpt", "upstream": "my-deployment"}],
        }
    ]
    live: Live = await live_factory(gateway_compatible_servers=json.dumps(servers))
    events = await ws_stream(
        live, {"model": "azure-gpt", "fallbacks": [], "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    )
    assert events[-1]["type"] == "done", events[-1]
    rec = emu.last
    # The key came in `api-key`, and no bearer header competed with it.
    assert rec.key_suffix == "7777" and rec.model == "my-deployment"
    assert rec.body["max_completion_tokens"] == 5


def test_compatible_server_config_is_checked(tmp_path: Any) -> None:
    from gateway.upstreams import CompatibleServerError, compatible_servers
    from tests.conftest import make_settings

    for bad in (
        [{"name": "openai", "base_url": "http://x/v1"}],
        [{"name": "x", "base_url": "ftp://x"}],
        [{"name": "x", "base_url": "http://x/v1", "kind": "other"}],
        [{"name": "x", "base_url": "http://x/v1", "models": [{"upstream": "m"}]}],
    ):
        with pytest.raises(CompatibleServerError):
            compatible_servers(make_settings(tmp_path, gateway_compatible_servers=json.dumps(bad)))
