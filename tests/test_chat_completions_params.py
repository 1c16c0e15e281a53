"""What `POST /v1/chat/completions` does with each field: mapped, refused by name (strict), or dropped and reported
(lenient); a fallback that cannot take the request is left out by name; every error in OpenAI's conventions; an
`x-request-id` on every response; `GET /v1/models/{id}`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import websockets
from openai import AsyncOpenAI

from tests.conftest import Live
from tests.emulators import Emulator, Script
from tests.support.openai_sdk import emulated_gateway, gw, sdk

pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")


def msgs(text: str = "hi") -> list[Any]:
    return [{"role": "user", "content": text}]


@pytest.fixture
async def live(emu: Emulator, live_factory: Callable[..., Any]) -> Live:
    return await emulated_gateway(emu, live_factory)


@pytest.fixture
async def client(live: Live) -> AsyncIterator[AsyncOpenAI]:
    async with sdk(live) as c:
        yield c


async def refused(client: AsyncOpenAI, **kw: Any) -> openai.BadRequestError:
    with pytest.raises(openai.BadRequestError) as raised:
        await client.chat.completions.create(**{"model": "gpt-5-mini", "messages": msgs(), **kw})
    err = raised.value
    assert (err.status_code, err.type) == (400, "invalid_request_error")
    return err


async def test_strict_refuses_what_the_model_cannot_take_naming_field_and_model(
    emu: Emulator, client: AsyncOpenAI
) -> None:
    err = await refused(client, temperature=0.2)
    assert (err.code, err.param) == ("unsupported_parameter", "temperature")
    assert "gpt-5-mini takes only the default temperature (1)" in err.message
    err = await refused(client, top_p=0.5, presence_penalty=0.4)
    assert err.param == "top_p" and "presence_penalty: gpt-5-mini takes no presence penalty" in err.message
    err = await refused(client, model="claude-sonnet-4-5", seed=1)
    assert (err.param, err.code) == ("seed", "unsupported_parameter") and "claude-sonnet-4-5" in err.message
    err = await refused(client, model="gemini-2.5-flash", parallel_tool_calls=False, tools=[tool("f")])
    assert err.param == "parallel_tool_calls"
    assert emu.requests == []  # refused before any provider was asked


def tool(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {}}}}


async def test_lenient_drops_and_reports_in_a_header_and_the_gateway_field(emu: Emulator, client: AsyncOpenAI) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-5-mini",
        messages=msgs(),
        temperature=0.2,
        logit_bias={"50256": -100},
        extra_body={"fallbacks": [], "strict_params": False},
    )
    assert raw.headers["x-gateway-dropped-params"] == "logit_bias, temperature"
    reply = raw.parse()
    assert reply.choices[0].message.content == "Hello world!"
    assert gw(reply)["dropped_params"] == [
        {"param": "logit_bias", "model": "gpt-5-mini", "reason": "the gateway takes no logit bias"},
        {"param": "temperature", "model": "gpt-5-mini", "reason": "takes only the default temperature (1)"},
    ]
    body = emu.requests[-1].body
    assert "temperature" not in body and "logit_bias" not in body and emu.requests[-1].rejected is None
    # Streaming says the same: in the header, and in the last chunk's gateway field.
    async with client.chat.completions.with_streaming_response.create(
        model="gpt-5-mini",
        messages=msgs(),
        temperature=0.2,
        stream=True,
        extra_body={"fallbacks": [], "strict_params": False},
    ) as streamed:
        assert streamed.headers["x-gateway-dropped-params"] == "temperature"
        chunks = [c async for c in await streamed.parse()]
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert [d["param"] for d in gw(final)["dropped_params"]] == ["temperature"]


async def test_the_default_comes_from_the_setting_and_a_request_may_choose(
    emu: Emulator, live_factory: Callable[..., Any]
) -> None:
    lenient = await emulated_gateway(emu, live_factory, gateway_strict_params=False)
    async with sdk(lenient) as client:
        reply = await client.chat.completions.create(
            model="gpt-5-mini", messages=msgs(), temperature=0.2, extra_body={"fallbacks": []}
        )
        assert [d["param"] for d in gw(reply)["dropped_params"]] == ["temperature"]
        with pytest.raises(openai.BadRequestError) as strict:
            await client.chat.completions.create(
                model="gpt-5-mini", messages=msgs(), temperature=0.2, extra_body={"strict_params": True}
            )
        assert strict.value.param == "temperature"


async def test_what_no_model_here_can_honour_is_refused_even_when_lenient(client: AsyncOpenAI) -> None:
    lenient = {"strict_params": False}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"n": 2}, "n"),
        ({"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "mp3"}}, "audio"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"tools": [{"type": "custom", "custom": {"name": "grammar"}}]}, "tools[0]"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}
                ]
            },
            "messages[0].content[0]",
        ),
        ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0]"),
    ]
    for body, param in cases:
        err = await refused(client, extra_body={**lenient, **body})
        assert (err.code, err.param) == ("unsupported_parameter", param), body


async def test_tuning_fields_with_no_equivalent_are_refused_when_strict(client: AsyncOpenAI) -> None:
    for body, param in [
        ({"logit_bias": {"1": 2}}, "logit_bias"),
        ({"verbosity": "low"}, "verbosity"),
        ({"service_tier": "flex"}, "service_tier"),
        ({"store": True}, "store"),
        ({"prompt_cache_key": "k"}, "prompt_cache_key"),
        ({"reasoning_effort": "max"}, "reasoning_effort"),
        ({"max_tokens": 100, "max_completion_tokens": 200}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "hi", "name": "ann"}]}, "messages[0].name"),
    ]:
        err = await refused(client, extra_body=body)
        assert (err.code, err.param) == ("unsupported_parameter", param), body


async def test_unknown_and_invalid_fields_are_400_with_param(client: AsyncOpenAI) -> None:
    err = await refused(client, extra_body={"frobnicate": True})
    assert (err.code, err.param) == ("unsupported_parameter", "frobnicate")
    err = await refused(client, extra_body={"messages": [{"role": "user", "content": "hi", "colour": "red"}]})
    assert (err.code, err.param) == ("unsupported_parameter", "messages[0].colour")
    err = await refused(client, temperature=3)
    assert (err.code, err.param) == ("invalid_request", "temperature")
    err = await refused(client, messages=[])
    assert (err.code, err.param) == ("invalid_request", "messages")


async def test_accepted_as_openai_defaults(emu: Emulator, client: AsyncOpenAI) -> None:
    """What asks for nothing beyond the default is taken (and nothing is dropped)."""
    reply = await client.chat.completions.create(
        model="gpt-5-mini",
        messages=[
            {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": "hi"},
        ],
        n=1,
        store=False,
        service_tier="auto",
        modalities=["text"],
        temperature=1,
        response_format={"type": "text"},
        user="u-1",
        extra_body={"fallbacks": []},
    )
    assert gw(reply)["dropped_params"] == [] and reply.choices[0].message.content == "Hello world!"
    body = emu.requests[-1].body
    assert body["messages"][0] == {"role": "system", "content": [{"type": "text", "text": "Be brief."}]}
    assert body["safety_identifier"] == "u-1" and "response_format" not in body


async def test_a_fallback_that_cannot_take_the_request_is_left_out_by_name(emu: Emulator, client: AsyncOpenAI) -> None:
    emu.script(Script(status=500), Script(status=500), Script(status=500), model="gpt-5-mini")
    reply = await client.chat.completions.create(
        model="gpt-5-mini",
        messages=msgs(),
        seed=7,
        extra_body={"fallbacks": ["claude-sonnet-4-5", "gemini-2.5-flash"]},
    )
    info = gw(reply)
    assert info["model"] == "gemini-2.5-flash" and reply.model == "gpt-5-mini"
    assert info["skipped"] == [
        {"model": "claude-sonnet-4-5", "provider": "anthropic", "reason": "cannot_honour", "params": ["seed"]}
    ]
    assert not [r for r in emu.requests if r.model == "claude-sonnet-4-5"]
    # With no model left to answer, the failure names the one left out too.
    emu.reset()
    emu.default(Script(status=500))
    with pytest.raises(openai.InternalServerError) as failed:
        await client.chat.completions.create(
            model="gpt-5-mini", messages=msgs(), seed=7, extra_body={"fallbacks": ["claude-sonnet-4-5"]}
        )
    assert failed.value.code == "all_models_failed"
    assert "claude-sonnet-4-5: cannot_honour (seed)" in failed.value.message


async def test_every_model_rate_limited_is_429_with_retry_after(emu: Emulator, client: AsyncOpenAI) -> None:
    emu.default(Script(status=429, retry_after=20))
    for stream in (False, True):
        with pytest.raises(openai.RateLimitError) as raised:
            await client.chat.completions.create(
                model="gpt-5-mini", messages=msgs(), stream=stream, extra_body={"fallbacks": ["claude-sonnet-4-5"]}
            )
        assert (raised.value.code, raised.value.type) == ("all_models_rate_limited", "rate_limit_error")
        assert raised.value.response.headers["retry-after"] == "20"
        assert (
            "gpt-5-mini: rate_limited" in raised.value.message
            and "claude-sonnet-4-5: rate_limited" in raised.value.message
        )


async def test_sdk_exception_classes_for_real_errors(live: Live, client: AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as nf:
        await client.chat.completions.create(model="no-such", messages=msgs())
    assert (nf.value.code, nf.value.type) == ("unknown_model", "not_found_error")
    async with AsyncOpenAI(base_url=f"{live.url}/v1", api_key="nope", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as auth:
            await bad.chat.completions.create(model="mock", messages=msgs())
    assert auth.value.type == "authentication_error"
    big = [{"role": "user", "content": "x" * 300_000}]
    with pytest.raises(openai.APIStatusError) as too_big:
        await client.chat.completions.create(model="mock", messages=big)  # type: ignore[arg-type]
    assert (too_big.value.status_code, too_big.value.code) == (413, "request_too_large")
    async with httpx.AsyncClient(base_url=live.url, headers=live.headers()) as http:
        r = await http.put("/v1/budget", json={"daily_usd": "0"})
        assert r.status_code == 200, r.text
    with pytest.raises(openai.APIStatusError) as broke:
        await client.chat.completions.create(model="mock", messages=msgs())
    assert (broke.value.status_code, broke.value.code, broke.value.type) == (
        402,
        "budget_exceeded",
        "insufficient_quota",
    )


async def test_every_response_has_a_request_id(live: Live) -> None:
    seen: list[str] = []
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        for r in [
            await http.get("/healthz"),
            await http.get("/v1/models"),
            await http.get("/v1/models", headers=live.headers()),
            await http.get("/nowhere"),
            await http.post("/v1/chat/completions", headers=live.headers(), json={"model": "mock"}),
            await http.post("/v1/chat/completions", headers=live.headers(), json={"model": "mock", "messages": msgs()}),
        ]:
            seen.append(r.headers["x-request-id"])
        async with http.stream(
            "POST",
            "/v1/chat/completions",
            headers=live.headers(),
            json={"model": "mock", "messages": msgs("[[mock tokens=3]]"), "stream": True},
        ) as streamed:
            seen.append(streamed.headers["x-request-id"])
    async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=live.headers()) as ws:
        assert ws.response is not None
        seen.append(ws.response.headers["x-request-id"])
    assert len(set(seen)) == len(seen) and all(s.startswith("req_") for s in seen)
    async with AsyncOpenAI(base_url=f"{live.url}/v1", api_key=live.token, max_retries=0) as sdk:
        raw = await sdk.chat.completions.with_raw_response.create(model="mock", messages=msgs())  # type: ignore[arg-type]
        assert raw.request_id is not None and raw.request_id.startswith("req_")
        with pytest.raises(openai.NotFoundError) as nf:
            await sdk.chat.completions.create(model="nope", messages=msgs())  # type: ignore[arg-type]
        assert nf.value.request_id is not None


async def test_one_model_in_the_openai_shape(live: Live) -> None:
    async with AsyncOpenAI(base_url=f"{live.url}/v1", api_key=live.token, max_retries=0) as sdk:
        mock = await sdk.models.retrieve("mock")
        assert (mock.id, mock.object, mock.owned_by) == ("mock", "model", "mock")
        listed = {m.id: m async for m in sdk.models.list()}
        assert mock.model_dump() == listed["mock"].model_dump()
        claude = await sdk.models.retrieve("claude")  # an alias answers with the model's id
        assert claude.id == "claude-sonnet-4-5" and (claude.model_extra or {})["provider"] == "anthropic"
        with pytest.raises(openai.NotFoundError) as nf:
            await sdk.models.retrieve("nope")
        assert nf.value.code == "unknown_model"


async def test_cache_control_markers_reach_anthropic(emu: Emulator, client: AsyncOpenAI) -> None:
    await client.chat.completions.create(
        model="claude-sonnet-4-5",
        messages=[
            {
                "role": "system",
                "content": [{"type": "text", "text": "Long rules.", "cache_control": {"type": "ephemeral"}}],  # type: ignore[typeddict-unknown-key]
            },
            {"role": "user", "content": "hi"},
        ],
        extra_body={"fallbacks": []},
    )
    body = emu.requests[-1].body
    assert emu.requests[-1].rejected is None
    assert body["system"] == [{"type": "text", "text": "Long rules.", "cache_control": {"type": "ephemeral"}}]


def test_the_header_and_field_names_in_the_docs() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "api-chat-completions.md").read_text()
    for name in ("x-gateway-dropped-params", "dropped_params", "strict_params", "cannot_honour", "x-request-id"):
        assert name in doc, name


async def test_a_slow_first_token_gets_the_headers_with_a_heartbeat(live_factory: Callable[..., Any]) -> None:
    """The headers wait for the answer to begin, but no longer than a heartbeat: a client sees the response start."""
    slow: Live = await live_factory(gateway_sse_ping_s=0.2)
    body = {"model": "mock", "messages": msgs("[[mock tokens=2 delay_ms=700]]"), "stream": True}
    async with (
        httpx.AsyncClient(base_url=slow.url, timeout=10) as http,
        http.stream("POST", "/v1/chat/completions", headers=slow.headers(), json=body) as r,
    ):
        assert r.status_code == 200 and r.headers["x-stream-id"].startswith("st_")
        frames = [f async for f in r.aiter_text()]
    text = "".join(frames)
    assert text.startswith(": ping\n\n")  # the heartbeat came first, before any chunk
    datas = [line.removeprefix("data: ") for line in text.split("\n") if line.startswith("data: ")]
    assert json.loads(datas[0])["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert datas[-1] == "[DONE]"
