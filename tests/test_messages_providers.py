"""The Messages API served by each provider: the `anthropic` SDK against the gateway, the gateway's adapters against
the emulators, so each request field is checked where the provider receives it. A tool loop on each, Claude's own
fields passed unchanged, thinking, images, structured output, a Claude answer continued by GPT mid-stream, and an
answer cut mid-way on each provider pair that still reads as one message."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import anthropic
import pytest
from anthropic import AsyncAnthropic
from pydantic import BaseModel

from gateway.app import create_app
from tests.conftest import Live, make_settings
from tests.emulators import Emulator, RecordedRequest, Script, ToolCallScript
from tests.support.fallback import FIRST, PAIRS, chain_for, requests_for, turns
from tests.support.server import serve
from tests.test_providers_gateway import emulated

pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")

WEATHER: Any = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 24).decode()


@pytest.fixture
async def gw(live_factory: Callable[..., Any], emu: Emulator) -> AsyncIterator[tuple[Live, AsyncAnthropic]]:
    emu.reset()
    live: Live = await live_factory(**emulated(emu))
    async with AsyncAnthropic(base_url=live.url, api_key=live.token, max_retries=0, timeout=20) as sdk:
        yield live, sdk


@pytest.fixture(scope="module")
async def shared(emu: Emulator, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Live, AsyncAnthropic]]:
    """One gateway for the tests that leave nothing behind that the next one could see (each resets the emulator)."""
    app = create_app(make_settings(tmp_path_factory.mktemp("gw"), **emulated(emu, gateway_retries=0)))
    async with serve(app) as url:
        live = Live(url, app)
        async with AsyncAnthropic(base_url=live.url, api_key=live.token, max_retries=0, timeout=20) as sdk:
            yield live, sdk


def only(emu: Emulator, model: str) -> RecordedRequest:
    (rec,) = requests_for(emu, model)
    assert rec.rejected is None, rec.rejected
    return rec


def system_of(rec: RecordedRequest) -> Any:
    body = rec.body
    if rec.provider == "anthropic":
        return body["system"]
    if rec.provider == "gemini":
        return body["systemInstruction"]["parts"][0]["text"]
    return body["messages"][0]["content"]


@pytest.mark.parametrize("provider", ["anthropic", "openai", "gemini"])
async def test_each_provider_answers_streaming_and_not(
    gw: tuple[Live, AsyncAnthropic], emu: Emulator, provider: str
) -> None:
    _, sdk = gw
    model = FIRST[provider]
    words = ("Foxes", " are", " small", " — ", "and", " quick.")
    emu.script(Script(text=words, input_tokens=40, output_tokens=6), Script(text=words), model=model)
    call: dict[str, Any] = {
        "model": model,
        "max_tokens": 300,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [{"role": "user", "content": "Tell me about foxes."}],
        "metadata": {"user_id": "end-user-7"},
        "extra_body": {"fallbacks": []},
    }
    msg = await sdk.messages.create(**call)
    assert msg.content[0].text == "".join(words) and msg.model == model  # type: ignore[union-attr]
    assert (msg.usage.input_tokens, msg.usage.output_tokens, msg.stop_reason) == (40, 6, "end_turn")
    async with sdk.messages.stream(**call) as stream:
        text = [t async for t in stream.text_stream]
    assert text == list(words)

    first, second = requests_for(emu, model)
    assert first.rejected is None and second.rejected is None
    assert turns(first) == [("user", "Tell me about foxes.")]
    assert system_of(first) in ("Be brief.", [{"type": "text", "text": "Be brief."}])
    user_field = {"anthropic": ("metadata", {"user_id": "end-user-7"}), "openai": ("safety_identifier", "end-user-7")}
    if provider in user_field:
        key, value = user_field[provider]
        assert first.body[key] == value
    if provider == "anthropic":
        assert first.body["max_tokens"] == 300


def tool_results(rec: RecordedRequest) -> list[Any]:
    """What a recorded request carried as the tool's output, in that provider's own shape."""
    if rec.provider == "anthropic":
        return [
            b
            for m in rec.body["messages"]
            if isinstance(m["content"], list)
            for b in m["content"]
            if b["type"] == "tool_result"
        ]
    if rec.provider == "gemini":
        return [p["functionResponse"] for c in rec.body["contents"] for p in c["parts"] if "functionResponse" in p]
    return [m for m in rec.body["messages"] if m["role"] == "tool"]


@pytest.mark.parametrize("provider", ["anthropic", "openai", "gemini"])
async def test_a_tool_loop_on_each_provider(gw: tuple[Live, AsyncAnthropic], emu: Emulator, provider: str) -> None:
    _, sdk = gw
    model = FIRST[provider]
    emu.script(Script(text=(), tool_call=ToolCallScript(), finish="tool_calls"), model=model)
    emu.script(Script(text=("Too", " cold", " to", " say.")), model=model)
    history: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    call: dict[str, Any] = {"model": model, "max_tokens": 300, "tools": [WEATHER], "extra_body": {"fallbacks": []}}
    async with sdk.messages.stream(messages=history, **call) as stream:
        events = [ev async for ev in stream]
        first = await stream.get_final_message()
    assert first.stop_reason == "tool_use"
    [use] = [b for b in first.content if b.type == "tool_use"]
    assert (use.name, use.input) == ("get_weather", {"city": "Paris"})
    assert use.id == {"anthropic": "toolu_emu1", "openai": "call_emu1", "gemini": "call_0"}[provider]
    assert [e.type for e in events if e.type == "input_json"], "the SDK saw the arguments stream"

    history += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sensor offline", "is_error": True}],
        },
    ]
    final = await sdk.messages.create(messages=history, tool_choice={"type": "auto"}, **call)
    assert final.content[0].text == "Too cold to say." and final.stop_reason == "end_turn"  # type: ignore[union-attr]

    rec = requests_for(emu, model)[-1]
    assert rec.rejected is None, rec.rejected
    [result] = tool_results(rec)
    if provider == "anthropic":
        assert result == {"type": "tool_result", "tool_use_id": use.id, "content": "sensor offline", "is_error": True}
        assert rec.body["tool_choice"] == {"type": "auto"}
    elif provider == "gemini":
        assert result == {"name": "get_weather", "response": {"error": "sensor offline"}}
    else:  # Chat Completions has no error flag: the failure is said in the tool message's words
        assert result == {"role": "tool", "tool_call_id": use.id, "content": "Error: sensor offline"}
        assert rec.body["tool_choice"] == "auto"


async def test_claude_gets_its_own_fields_as_sent(gw: tuple[Live, AsyncAnthropic], emu: Emulator) -> None:
    _, sdk = gw
    content: Any = [
        {"type": "text", "text": "What is in these?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/fox.jpg"}},
    ]
    await sdk.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=200,
        messages=[{"role": "user", "content": content}],
        stop_sequences=["\n\nHuman:"],
        tools=[WEATHER],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        extra_body={"fallbacks": [], "top_k": 40, "temperature": 0.3},
    )
    body = only(emu, "claude-sonnet-4-5").body
    assert body["messages"] == [{"role": "user", "content": content}]
    assert (body["stop_sequences"], body["top_k"], body["temperature"]) == (["\n\nHuman:"], 40, 0.3)
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert body["tools"] == [WEATHER]


async def test_images_reach_every_provider(gw: tuple[Live, AsyncAnthropic], emu: Emulator) -> None:
    _, sdk = gw
    image: Any = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    for model in ("gpt-5-mini", "gemini-2.5-flash"):
        await sdk.messages.create(
            model=model,
            max_tokens=200,
            messages=[{"role": "user", "content": [image, {"type": "text", "text": "What is it?"}]}],
            extra_body={"fallbacks": []},
        )
    openai_parts = only(emu, "gpt-5-mini").body["messages"][0]["content"]
    assert openai_parts[0] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
    gemini_parts = only(emu, "gemini-2.5-flash").body["contents"][0]["parts"]
    assert gemini_parts[0] == {"inlineData": {"mimeType": "image/png", "data": PNG}}


async def test_thinking_streams_as_thinking_blocks(gw: tuple[Live, AsyncAnthropic], emu: Emulator) -> None:
    _, sdk = gw
    script = Script(thinking=("Foxes are", " canids."), text=("They", " are", " canids."))
    emu.script(script, script, model="claude-sonnet-4-5")
    call: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4000,
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "messages": [{"role": "user", "content": "What are foxes?"}],
        "extra_body": {"fallbacks": []},
    }
    async with sdk.messages.stream(**call) as stream:
        thought = [ev.thinking async for ev in stream if ev.type == "thinking"]
        final = await stream.get_final_message()
    assert thought == ["Foxes are", " canids."]
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == "Foxes are canids."  # type: ignore[union-attr]
    assert final.content[1].text == "They are canids."  # type: ignore[union-attr]
    plain = await sdk.messages.create(**call)
    assert [b.type for b in plain.content] == ["thinking", "text"]
    first = requests_for(emu, "claude-sonnet-4-5")[0]
    assert first.body["thinking"] == {"type": "enabled", "budget_tokens": 2048} and first.body["max_tokens"] == 4000

    # A model with no thinking budget is refused by name; Gemini takes the budget as its own.
    with pytest.raises(anthropic.BadRequestError) as refused:
        await sdk.messages.create(**{**call, "model": "gpt-5-mini"})
    assert refused.value.api_message == "thinking.budget_tokens: gpt-5-mini takes no thinking budget in tokens"
    await sdk.messages.create(**{**call, "model": "gemini-2.5-flash"})
    config = only(emu, "gemini-2.5-flash").body["generationConfig"]
    assert config["thinkingConfig"]["thinkingBudget"] == 2048


async def test_a_tool_loop_with_thinking_sends_the_signed_thinking_back(
    gw: tuple[Live, AsyncAnthropic], emu: Emulator
) -> None:
    """Claude with thinking on continues a tool loop only from the turn's own signed thinking: the signature
    streams to the client, comes back with the turn, and reaches Claude unchanged (no other provider gets it)."""
    _, sdk = gw
    model = "claude-sonnet-4-5"
    call_turn = Script(thinking=("Paris", " needs a lookup."), text=(), tool_call=ToolCallScript(), finish="tool_calls")
    emu.script(call_turn, Script(text=("Too", " cold.")), model=model)
    emu.script(Script(text=("Mild.",)), model="gpt-5-mini")
    history: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    call: dict[str, Any] = {
        "model": model,
        "max_tokens": 4000,
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "tools": [WEATHER],
        "extra_body": {"fallbacks": []},
    }
    async with sdk.messages.stream(messages=history, **call) as stream:
        signatures = [ev.signature async for ev in stream if ev.type == "signature"]
        first = await stream.get_final_message()
    assert signatures == ["EmuSignature"]
    assert [b.type for b in first.content] == ["thinking", "tool_use"]
    thought, use = first.content
    assert (thought.thinking, thought.signature) == ("Paris needs a lookup.", "EmuSignature")  # type: ignore[union-attr]
    history += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "2 C"}]},  # type: ignore[union-attr]
    ]
    final = await sdk.messages.create(messages=history, **call)
    assert final.content[0].text == "Too cold."  # type: ignore[union-attr]
    rec = requests_for(emu, model)[-1]
    assert rec.rejected is None, rec.rejected
    sent = rec.body["messages"][1]["content"]
    assert sent[0] == {"type": "thinking", "thinking": "Paris needs a lookup.", "signature": "EmuSignature"}
    assert sent[1]["type"] == "tool_use"

    # A forged signature is the provider's to refuse, and it says so.
    forged = [dict(history[1], content=[{**history[1]["content"][0], "signature": "forged"}, history[1]["content"][1]])]
    with pytest.raises(anthropic.BadRequestError) as refused:
        await sdk.messages.create(messages=[history[0], *forged, history[2]], **call)
    assert "Invalid `signature`" in refused.value.message

    # Another provider serving the next turn is not sent Anthropic's signed blocks.
    gpt = {k: v for k, v in call.items() if k != "thinking"}
    await sdk.messages.create(messages=history, **{**gpt, "model": "gpt-5-mini"})
    sent_to_gpt = only(emu, "gpt-5-mini").body["messages"]
    assert all("signature" not in str(m) for m in sent_to_gpt)


class Fox(BaseModel):
    name: str
    legs: int


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "gpt-5-mini"])
async def test_structured_output_parses(gw: tuple[Live, AsyncAnthropic], emu: Emulator, model: str) -> None:
    _, sdk = gw
    emu.script(Script(json={"name": "Vulpes", "legs": 4}), model=model)
    parsed = await sdk.messages.parse(
        model=model,
        max_tokens=300,
        messages=[{"role": "user", "content": "Describe a fox."}],
        output_format=Fox,
        extra_body={"fallbacks": []},
    )
    assert parsed.parsed_output == Fox(name="Vulpes", legs=4)
    body = only(emu, model).body
    if model == "claude-sonnet-4-5":
        assert body["output_config"]["format"]["type"] == "json_schema"
    else:
        assert body["response_format"]["type"] == "json_schema"


async def test_a_claude_answer_continued_by_gpt_reads_as_one_message(
    gw: tuple[Live, AsyncAnthropic], emu: Emulator
) -> None:
    _, sdk = gw
    partial = ("Foxes", " —", " small", " omnivores")
    emu.script(Script(text=(*partial, " that", " roam."), error_after=len(partial)), model="claude-sonnet-4-5")
    # The continuation starts the answer over (a common way models retype): the gateway cuts the repeat.
    emu.script(Script(text=(" that", " live", " everywhere."), echo="whole"), model="gpt-5-mini")
    async with sdk.messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=300,
        messages=[{"role": "user", "content": "Tell me about foxes."}],
        extra_body={"fallbacks": ["gpt-5-mini"]},
    ) as stream:
        deltas = [ev async for ev in stream if ev.type == "message_delta"]
        final = await stream.get_final_message()
    assert [b.type for b in final.content] == ["text"]
    assert final.content[0].text == "Foxes — small omnivores that live everywhere."  # type: ignore[union-attr]
    assert final.model == "claude-sonnet-4-5"
    gateway = deltas[0].model_extra["gateway"]  # type: ignore[index]
    assert [(f["from_model"], f["to_model"], f["reason"]) for f in gateway["fallbacks"]] == [
        ("claude-sonnet-4-5", "gpt-5-mini", "server_error")
    ]
    assert gateway["seams"] == [] and "content" not in gateway
    assert [s["model"] for s in gateway["segments"]] == ["claude-sonnet-4-5", "gpt-5-mini"]
    gpt = only(emu, "gpt-5-mini")
    assert turns(gpt)[1] == ("assistant", "".join(partial))  # it was shown the partial answer


async def test_a_provider_saying_busy_is_the_sdks_own_error(gw: tuple[Live, AsyncAnthropic], emu: Emulator) -> None:
    _, sdk = gw
    call: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
        "extra_body": {"fallbacks": []},
    }
    # Over 10 s the router moves on rather than wait: the stream fails, saying when to retry.
    emu.script(Script(status=429, retry_after=30), Script(status=429, retry_after=30), model="claude-sonnet-4-5")
    with pytest.raises(anthropic.RateLimitError) as limited:
        async with sdk.messages.stream(**call) as stream:
            await stream.get_final_message()
    assert limited.value.response.headers["retry-after"] == "30"
    assert limited.value.type == "rate_limit_error"
    emu.reset()
    emu.default(Script(status=529), model="claude-sonnet-4-5")
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        await sdk.messages.create(**call)
    assert overloaded.value.status_code == 529 and overloaded.value.type == "overloaded_error"


async def test_beta_features_reach_claude_and_only_claude(gw: tuple[Live, AsyncAnthropic], emu: Emulator) -> None:
    """`anthropic-beta` features the gateway does not provide itself go to Claude as the client sent them; a
    fallback of another provider cannot take them, so it is skipped by name rather than asked without them."""
    _, sdk = gw
    emu.script(Script(status=529), Script(status=529), Script(status=529), model="claude-sonnet-4-5")
    emu.script(Script(text=("Long", " context.")), model="claude-opus-4-1")
    msg = await sdk.beta.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=100,
        messages=[{"role": "user", "content": "Read it all."}],
        betas=["context-1m-2025-08-07", "prompt-caching-2024-07-31"],
        extra_body={"fallbacks": ["gpt-5-mini", "claude-opus-4-1"]},
    )
    assert msg.content[0].text == "Long context."  # type: ignore[union-attr]
    # Only the feature Claude must provide (prompt caching is the gateway's own pass-through), to each Claude asked.
    for model in ("claude-sonnet-4-5", "claude-opus-4-1"):
        assert all(r.headers["anthropic-beta"] == "context-1m-2025-08-07" for r in requests_for(emu, model))
    assert requests_for(emu, "gpt-5-mini") == []
    skipped = msg.model_extra["gateway"]["skipped"]  # type: ignore[index]
    assert skipped == [{"model": "gpt-5-mini", "provider": "openai", "reason": "cannot_honour"}]
    # Without betas nothing is sent in the header.
    emu.reset()
    emu.script(Script(text=("Plain.",)), model="claude-sonnet-4-5")
    await sdk.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=50,
        messages=[{"role": "user", "content": "hi"}],
        extra_body={"fallbacks": []},
    )
    assert "anthropic-beta" not in requests_for(emu, "claude-sonnet-4-5")[-1].headers


async def test_a_stop_sequence_is_named_where_the_provider_names_it(
    gw: tuple[Live, AsyncAnthropic], emu: Emulator
) -> None:
    _, sdk = gw
    stopped = Script(text=("Done", " here"), raw_finish="stop_sequence", stop_sequence="END")
    emu.script(stopped, stopped, model="claude-sonnet-4-5")
    call: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Count, then say END."}],
        "stop_sequences": ["END"],
        "extra_body": {"fallbacks": []},
    }
    plain = await sdk.messages.create(**call)
    async with sdk.messages.stream(**call) as stream:
        streamed = await stream.get_final_message()
    for msg in (plain, streamed):
        assert (msg.stop_reason, msg.stop_sequence) == ("stop_sequence", "END")
    assert only_last(emu, "claude-sonnet-4-5").body["stop_sequences"] == ["END"]
    # Gemini says only that the model stopped: the answer ends as a turn that ended, naming no sequence.
    emu.script(Script(text=("Done",)), model="gemini-2.5-flash")
    gemini = await sdk.messages.create(**{**call, "model": "gemini-2.5-flash"})
    assert (gemini.stop_reason, gemini.stop_sequence) == ("end_turn", None)
    assert only_last(emu, "gemini-2.5-flash").body["generationConfig"]["stopSequences"] == ["END"]


def only_last(emu: Emulator, model: str) -> RecordedRequest:
    return requests_for(emu, model)[-1]


@pytest.mark.parametrize(("p1", "p2"), PAIRS)
async def test_a_stream_cut_mid_answer_on_each_provider_pair_reads_as_one_message(
    shared: tuple[Live, AsyncAnthropic], emu: Emulator, p1: str, p2: str
) -> None:
    _, sdk = shared
    emu.reset()
    first, second = (m.id for m in chain_for(p1, p2))
    emu.script(Script(text=("One,", " two,", " three,", " four"), drop_after=2), model=first)
    # The continuation retypes what it was shown before going on: the gateway cuts the repeat.
    emu.script(Script(text=(" three,", " four."), echo="whole"), model=second)
    async with sdk.messages.stream(
        model=first,
        max_tokens=300,
        messages=[{"role": "user", "content": "Count to four."}],
        extra_body={"fallbacks": [second]},
    ) as stream:
        events = [ev async for ev in stream]
        final = await stream.get_final_message()
    text = "".join(ev.text for ev in events if ev.type == "text")
    assert [b.type for b in final.content] == ["text"]
    assert text == final.content[0].text == "One, two, three, four."  # type: ignore[union-attr]
    assert (final.model, final.stop_reason) == (first, "end_turn")
    (delta,) = [ev for ev in events if ev.type == "message_delta"]
    gateway = delta.model_extra["gateway"]  # type: ignore[index]
    assert [(f["from_model"], f["to_model"], f["mode"], f["chars_so_far"]) for f in gateway["fallbacks"]] == [
        (first, second, "continue", len("One, two,"))
    ]
    assert [(s["model"], s["status"]) for s in gateway["segments"]] == [(first, "failed"), (second, "ok")]
    assert gateway["seams"] == [] and "content" not in gateway  # nothing to take back: the stream is the answer
    (rec,) = requests_for(emu, second)
    assert rec.rejected is None, rec.rejected
    assert "One, two," in json.dumps(rec.body, ensure_ascii=False)  # it was shown the partial answer
