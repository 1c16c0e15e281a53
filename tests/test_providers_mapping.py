"""What each adapter sends upstream (as the emulator received it), and how SDK clients and pools are shared."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from providers import errors
from providers.anthropic import AnthropicProvider
from providers.base import ChatRequest, Credential, ImagePart, Message, TextPart, ToolCall, ToolSpec
from providers.capabilities import unsupported
from providers.catalog import Catalog
from providers.gemini import GeminiProvider
from providers.openai import OpenAIProvider
from providers.upstream import ClientCache, retry_after
from tests.emulators import Emulator, Script

pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake-image-bytes").decode()
WEATHER = ToolSpec(
    "get_weather",
    "Weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
CONVERSATION = ChatRequest(
    (
        Message("system", "You are terse."),
        Message(
            "user",
            (
                TextPart("What is in these and how is the weather?"),
                ImagePart(f"data:image/png;base64,{PNG}"),
                ImagePart("https://example.com/cat.webp"),
            ),
        ),
        Message("assistant", "Checking.", tool_calls=(ToolCall("call_1", "get_weather", '{"city": "Paris"}'),)),
        Message("tool", '{"temp_c": 21}', tool_call_id="call_1"),
        Message("user", "Thanks. And tomorrow?"),
    ),
    max_tokens=300,
    temperature=0.2,
    stop=("END",),
    tools=(WEATHER,),
)
KEY = Credential("sk-mapping-9999")


@pytest.fixture(scope="module")
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator() as e:
        yield e


async def run(provider: OpenAIProvider | AnthropicProvider | GeminiProvider, model: str, req: ChatRequest) -> None:
    try:
        async for _ in provider.stream(req, model, KEY):
            pass
    finally:
        await provider.aclose()


async def test_openai_request_shape(emu: Emulator) -> None:
    await run(OpenAIProvider("openai", emu.openai_base_url), "gpt-4.1-mini", CONVERSATION)
    body = emu.last.body
    assert emu.last.path == "/v1/chat/completions"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["max_completion_tokens"] == 300 and body["temperature"] == 0.2 and body["stop"] == ["END"]
    msgs = body["messages"]
    assert msgs[0] == {"role": "system", "content": "You are terse."}
    assert msgs[1]["content"][1] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
    assert msgs[1]["content"][2]["image_url"]["url"] == "https://example.com/cat.webp"
    assert msgs[2]["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    ]
    assert msgs[3] == {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'}
    assert msgs[4] == {"role": "user", "content": "Thanks. And tomorrow?"}
    assert body["tools"][0]["function"]["name"] == "get_weather"
    assert body["tools"][0]["function"]["parameters"]["required"] == ["city"]


async def test_openai_reasoning_models_are_sent_temperature_and_it_is_refused_by_name(emu: Emulator) -> None:
    # Nothing is dropped on the way: the capability check names what GPT-5 cannot take before a stream starts,
    # and a request that skips that check gets the provider's own refusal, not a silently different answer.
    spec = Catalog.build().resolve("gpt-5-mini")
    assert [u.field for u in unsupported(spec, CONVERSATION)] == ["temperature", "stop"]
    with pytest.raises(errors.BadRequest, match="temperature"):
        await run(OpenAIProvider("openai", emu.openai_base_url), "gpt-5-mini", CONVERSATION)
    assert emu.last.body["temperature"] == 0.2 and emu.last.rejected
    honoured = replace(CONVERSATION, temperature=None, stop=())
    assert unsupported(spec, honoured) == ()
    await run(OpenAIProvider("openai", emu.openai_base_url), "gpt-5-mini", honoured)
    assert "temperature" not in emu.last.body and "stop" not in emu.last.body and emu.last.completed


async def test_anthropic_request_shape(emu: Emulator) -> None:
    await run(AnthropicProvider(emu.anthropic_base_url), "claude-sonnet-4-5", CONVERSATION)
    rec = emu.last
    body = rec.body
    assert rec.path == "/v1/messages"
    assert body["system"] == "You are terse." and body["max_tokens"] == 300 and body["stop_sequences"] == ["END"]
    assert body["temperature"] == 0.2  # Claude 4.5 takes temperature (from 0 to 1); nothing is dropped
    msgs = body["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    image, url_image = msgs[0]["content"][1], msgs[0]["content"][2]
    assert image == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    assert url_image == {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.webp"}}
    assert msgs[1]["content"][1] == {
        "type": "tool_use",
        "id": "call_1",
        "name": "get_weather",
        "input": {"city": "Paris"},
    }
    # The tool result and the next question travel in one user turn.
    assert msgs[2]["content"][0] == {"type": "tool_result", "tool_use_id": "call_1", "content": '{"temp_c": 21}'}
    assert msgs[2]["content"][1] == {"type": "text", "text": "Thanks. And tomorrow?"}
    assert body["tools"] == [
        {"name": "get_weather", "description": "Weather for a city", "input_schema": WEATHER.parameters}
    ]


async def test_anthropic_prefill_stays_the_last_assistant_turn(emu: Emulator) -> None:
    req = ChatRequest((Message("user", "Count to five."), Message("assistant", "One, two,")))
    await run(AnthropicProvider(emu.anthropic_base_url), "claude-sonnet-4-5", req)
    msgs = emu.last.body["messages"]
    assert msgs[-1] == {"role": "assistant", "content": [{"type": "text", "text": "One, two,"}]}
    assert emu.last.body["max_tokens"] == 8192  # required by the API: a default when the caller gave none


async def test_gemini_request_shape(emu: Emulator) -> None:
    await run(GeminiProvider(emu.gemini_base_url), "gemini-2.5-flash", CONVERSATION)
    rec = emu.last
    body = rec.body
    assert rec.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent" and rec.query == "alt=sse"
    assert rec.headers.get("x-goog-api-key") is None and rec.key_suffix == "9999"  # key sent, not recorded
    assert body["systemInstruction"]["parts"] == [{"text": "You are terse."}]
    contents = body["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    # The SDK writes some nested names in snake case; the API reads both spellings.
    blob = contents[0]["parts"][1]["inlineData"]
    assert blob["data"] == PNG and (blob.get("mimeType") or blob.get("mime_type")) == "image/png"
    file = contents[0]["parts"][2]["fileData"]
    assert (file.get("fileUri") or file.get("file_uri")) == "https://example.com/cat.webp"
    assert (file.get("mimeType") or file.get("mime_type")) == "image/webp"
    assert contents[1]["parts"][1] == {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
    assert contents[2]["parts"][0] == {"functionResponse": {"name": "get_weather", "response": {"temp_c": 21}}}
    gen = body["generationConfig"]
    assert gen == {"maxOutputTokens": 300, "temperature": 0.2, "stopSequences": ["END"]}
    decl = body["tools"][0]["functionDeclarations"][0]
    assert (
        decl["name"] == "get_weather"
        and (decl.get("parametersJsonSchema") or decl.get("parameters_json_schema")) == WEATHER.parameters
    )


async def test_clients_per_key_share_one_pool_and_its_connections(emu: Emulator) -> None:
    provider = OpenAIProvider("openai", emu.openai_base_url)
    before = emu.connections
    req = ChatRequest((Message("user", "hi"),))
    try:
        for key in ("sk-user-a-1111", "sk-user-b-2222", "sk-user-c-3333", "sk-user-a-1111"):
            emu.script(Script(text=("ok",)))
            async for _ in provider.stream(req, "gpt-5-mini", Credential(key)):
                pass
        cache = provider._clients
        assert len(cache) == 3 and cache.pools == 1
        # Three users, four streams, one keep-alive connection.
        assert emu.connections - before == 1
        assert [r.key_suffix for r in emu.requests[-4:]] == ["1111", "2222", "3333", "1111"]
    finally:
        await provider.aclose()


def test_client_cache_is_bounded() -> None:
    made: list[str] = []
    cache: ClientCache[str] = ClientCache(lambda url, key, pool: made.append(key) or key, max_clients=2)
    for key in ("a", "b", "a", "c", "b"):
        cache.get("http://x", key)
    # "b" was evicted when "c" arrived (least recently used), so it was made again.
    assert made == ["a", "b", "c", "b"] and len(cache) == 2 and cache.pools == 1


def test_retry_after_forms() -> None:
    assert retry_after({"retry-after": "3"}) == 3
    assert retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0
    assert retry_after({}) is None and retry_after({"retry-after": "soon"}) is None
