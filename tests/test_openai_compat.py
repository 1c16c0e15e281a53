"""The official `openai` SDK, pointed at the gateway as its base URL: streaming and not, fallbacks, errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI

from gateway.auth import DEV_USER_ID
from tests.conftest import Live
from tests.emulators import Emulator, Script, wire
from tests.support.readme import run_python


@pytest.fixture
async def client(live: Live) -> AsyncIterator[AsyncOpenAI]:
    # No retries: a test must see the first answer, not a retried one.
    async with AsyncOpenAI(base_url=f"{live.url}/v1", api_key=live.token, max_retries=0, timeout=20) as c:
        yield c


def msgs(text: str) -> list[Any]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]


def extra(obj: Any) -> dict[str, Any]:
    """The gateway's extra field, as the SDK keeps it."""
    assert obj.model_extra is not None
    gw: dict[str, Any] = obj.model_extra["gateway"]
    return gw


async def test_models_list_in_the_openai_shape(client: AsyncOpenAI) -> None:
    models = [m async for m in client.models.list()]
    ids = {m.id for m in models}
    assert {"mock", "mock-backup"} <= ids
    mock = next(m for m in models if m.id == "mock")
    assert mock.object == "model" and mock.owned_by == "mock"


async def test_non_streaming_completion(client: AsyncOpenAI) -> None:
    resp = await client.chat.completions.create(model="mock", messages=msgs("hello [[mock tokens=6]]"))
    assert resp.object == "chat.completion" and resp.id.startswith("chatcmpl-")
    choice = resp.choices[0]
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    assert choice.message.content is not None and len(choice.message.content.split()) == 6
    assert resp.usage is not None and resp.usage.completion_tokens == 6
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + 6
    gw = extra(resp)
    assert gw["fallbacks"] == [] and [s["model"] for s in gw["segments"]] == ["mock"]
    assert Decimal(gw["cost_usd"]) == Decimal(gw["segments"][0]["cost_usd"]) > 0
    assert gw["stream_id"] == "st_" + resp.id.removeprefix("chatcmpl-")


async def test_streaming_matches_non_streaming_and_reports_usage(client: AsyncOpenAI) -> None:
    plain = await client.chat.completions.create(model="mock", messages=msgs("same [[mock tokens=9]]"))
    stream = await client.chat.completions.create(
        model="mock", messages=msgs("same [[mock tokens=9]]"), stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 9
    gw = extra(finals[0])
    assert Decimal(gw["cost_usd"]) == sum(Decimal(s["cost_usd"]) for s in gw["segments"]) > 0


async def test_midstream_fallback_streams_one_coherent_answer(client: AsyncOpenAI) -> None:
    reference = await client.chat.completions.create(model="mock", messages=msgs("story [[mock tokens=10]]"))
    stream = await client.chat.completions.create(
        model="mock",
        messages=msgs("story [[mock tokens=10 fail_after=4 only=mock]]"),
        stream=True,
        extra_body={"fallbacks": ["mock-backup"]},
    )
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    # The continuation picks up where the failed model stopped: no word lost, none repeated.
    assert text == reference.choices[0].message.content
    marks = [i for i, c in enumerate(chunks) if c.model_extra and "fallback" in c.model_extra.get("gateway", {})]
    assert len(marks) == 1
    fb = extra(chunks[marks[0]])["fallback"]
    assert (fb["from_model"], fb["to_model"], fb["reason"], fb["mode"]) == (
        "mock",
        "mock-backup",
        "server_error",
        "continue",
    )
    before = "".join(c.choices[0].delta.content or "" for c in chunks[: marks[0]])
    assert fb["chars_so_far"] == len(before) and len(before.split()) == 4
    # Every chunk names the model asked for; the one that answered is in the gateway field.
    assert {c.model for c in chunks} == {"mock"}
    gw = extra(chunks[-1])
    assert gw["model"] == "mock-backup"
    assert [(s["model"], s["status"]) for s in gw["segments"]] == [("mock", "failed"), ("mock-backup", "ok")]
    assert gw["segments"][0]["estimated"] is True and gw["estimated"] is True
    assert Decimal(gw["cost_usd"]) == sum(Decimal(s["cost_usd"]) for s in gw["segments"])


async def test_non_streaming_fallback_and_default_chain(client: AsyncOpenAI) -> None:
    resp = await client.chat.completions.create(
        model="mock", messages=msgs("x [[mock tokens=8 fail_after=2 only=mock]]")
    )
    gw = extra(resp)
    assert [f["to_model"] for f in gw["fallbacks"]] == ["mock-backup"]
    assert resp.model == "mock" and gw["model"] == "mock-backup" and resp.choices[0].message.content is not None
    assert len(resp.choices[0].message.content.split()) == 8


async def test_tool_calls_in_both_modes(client: AsyncOpenAI) -> None:
    tools: list[Any] = [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}
    ]
    resp = await client.chat.completions.create(
        model="mock", messages=msgs("weather? [[mock tool=get_weather]]"), tools=tools
    )
    call = resp.choices[0].message.tool_calls
    assert resp.choices[0].finish_reason == "tool_calls" and call is not None
    assert call[0].type == "function" and call[0].function.name == "get_weather"  # type: ignore[union-attr]
    assert call[0].function.arguments == '{"city": "Paris"}'  # type: ignore[union-attr]
    stream = await client.chat.completions.create(
        model="mock", messages=msgs("weather? [[mock tool=get_weather]]"), tools=tools, stream=True
    )
    pieces = [tc for c in [c async for c in stream] if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert pieces[0].id == call[0].id and pieces[0].function is not None and pieces[0].function.name == "get_weather"
    assert "".join(p.function.arguments or "" for p in pieces if p.function) == '{"city": "Paris"}'


async def test_errors_reach_the_sdk_as_its_own_exceptions(live: Live, client: AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as nf:
        await client.chat.completions.create(model="no-such-model", messages=msgs("hi"))
    assert nf.value.code == "unknown_model"
    async with AsyncOpenAI(base_url=f"{live.url}/v1", api_key="not-a-token", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError):
            await bad.chat.completions.create(model="mock", messages=msgs("hi"))
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(model="mock", messages=msgs("hi"), n=2)
    assert (refused.value.code, refused.value.param) == ("unsupported_parameter", "n")
    # every model of the chain fails after the answer began: the stream raises after its partial text
    stream = await client.chat.completions.create(
        model="mock", messages=msgs("doomed [[mock tokens=10 fail_after=3]]"), stream=True
    )
    got: list[str] = []
    with pytest.raises(openai.APIError) as failed:
        async for c in stream:
            got.append(c.choices[0].delta.content or "")
    assert len("".join(got).split()) == 6  # three words from each model before it failed
    assert isinstance(failed.value.body, dict) and failed.value.body["code"] == "all_models_failed"
    with pytest.raises(openai.InternalServerError) as failed_plain:
        await client.chat.completions.create(model="mock", messages=msgs("doomed [[mock tokens=10 fail_after=3]]"))
    assert failed_plain.value.status_code == 502


async def test_a_prompt_too_long_or_refused_fails_as_openai_would_say_it(live_factory: Callable[..., Any]) -> None:
    """The provider's own code and message reach the SDK: in the error body of a failed stream and of a reply."""
    async with Emulator() as emu:
        live: Live = await live_factory(
            openai_base_url=emu.openai_base_url, openai_api_key="sk-operator", gateway_allow_operator_keys=True
        )
        emu.default(Script(error_kind="context_length"), model="gpt-5-mini")
        said = wire.CONTEXT_LENGTH_ERRORS["openai"][1]["error"]["message"]
        async with AsyncOpenAI(base_url=f"{live.url}/v1", api_key=live.token, max_retries=0) as client:
            with pytest.raises(openai.BadRequestError) as plain:
                await client.chat.completions.create(
                    model="gpt-5-mini", messages=msgs("hi"), extra_body={"fallbacks": []}
                )
            assert plain.value.code == "context_length_exceeded" and said in plain.value.message
            # A stream that fails before its answer began answers with the error's own status, as OpenAI does.
            with pytest.raises(openai.BadRequestError) as streamed:
                await client.chat.completions.create(
                    model="gpt-5-mini", messages=msgs("hi"), stream=True, extra_body={"fallbacks": []}
                )
            assert isinstance(streamed.value.body, dict) and streamed.value.body["code"] == "context_length_exceeded"
            assert "gpt-5-mini: context_length_exceeded (context_length_exceeded: " in streamed.value.body["message"]

            emu.default(Script(error_kind="refusal"), model="gpt-5-mini")
            with pytest.raises(openai.BadRequestError) as refused:
                await client.chat.completions.create(
                    model="gpt-5-mini", messages=msgs("hi"), extra_body={"fallbacks": []}
                )
            assert refused.value.code == "content_filtered" and "invalid_prompt" in refused.value.message
            # Asked to, the gateway routes the refusal around: the next model answers.
            emu.default(Script(text=("Fine.",)), model="gpt-5")
            reply = await client.chat.completions.create(
                model="gpt-5-mini", messages=msgs("hi"), extra_body={"fallbacks": ["gpt-5"], "on_refusal": "fallback"}
            )
            assert reply.choices[0].message.content == "Fine."
            assert [(f["from_model"], f["reason"]) for f in extra(reply)["fallbacks"]] == [
                ("gpt-5-mini", "content_filtered")
            ]
            assert extra(reply)["segments"][0]["provider_code"] == "invalid_prompt"


async def test_closing_the_stream_stops_generation(live: Live, client: AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="mock", messages=msgs("long [[mock tokens=5000 delay_ms=2]]"), stream=True
    )
    ids = []
    async for chunk in stream:
        ids.append(chunk.id)
        if len(ids) == 5:
            break
    await stream.close()
    sid = "st_" + ids[0].removeprefix("chatcmpl-")
    session = live.services.sessions.get(sid, DEV_USER_ID)
    async with asyncio.timeout(10):
        while not session.finished:
            await asyncio.sleep(0.02)
    assert session.record is not None and session.record.status == "cancelled"
    assert 0 < session.record.output_tokens < 5000  # the partial output is billed


async def test_the_readme_snippet_runs(live: Live, client: AsyncOpenAI) -> None:
    text, cost = await run_python("chat-completions", live)
    reference = await client.chat.completions.create(
        model="mock", messages=[{"role": "user", "content": "Hello [[mock tokens=40]]"}]
    )
    # Word for word what the mock answers without the fault: the whole answer across the fallback, none repeated.
    assert text == reference.choices[0].message.content and len(text.split()) == 40
    assert cost > 0
