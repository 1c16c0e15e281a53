"""Each adapter through its official SDK against the emulator: text, UTF-8, tools, usage, faults, cancellation."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx2
import pytest

from providers import errors, sse
from providers.anthropic import AnthropicProvider
from providers.base import ChatRequest, Credential, Message, Provider
from providers.events import Finish, ProviderEvent, TextDelta, ToolCallDelta, Usage
from providers.gemini import GeminiProvider
from providers.openai import OpenAIProvider
from providers.upstream import ClientCache
from tests.emulators import Emulator, Script, ToolCallScript

# The SDK warns about the model's announced retirement on every call; it is not what these tests check.
pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")

REQ = ChatRequest((Message("system", "be brief"), Message("user", "hello")), max_tokens=64)
KEY = Credential("sk-test-key-0001")
# Disconnects must reach the emulator promptly, not after a read timeout or a garbage collection.
DISCONNECT_WITHIN_S = 0.2


@dataclass
class Case:
    name: str
    provider: Provider
    model: str


@pytest.fixture(scope="module")
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator() as e:
        yield e


@pytest.fixture(params=["openai", "anthropic", "gemini"])
async def case(request: pytest.FixtureRequest, emu: Emulator) -> AsyncIterator[Case]:
    emu.reset()
    name = request.param
    provider: Provider
    if name == "openai":
        provider, model = OpenAIProvider("openai", emu.openai_base_url), "gpt-5-mini"
    elif name == "anthropic":
        provider, model = AnthropicProvider(emu.anthropic_base_url), "claude-sonnet-4-5"
    else:
        provider, model = GeminiProvider(emu.gemini_base_url), "gemini-2.5-flash"
    yield Case(name, provider, model)
    await provider.aclose()


async def collect(case: Case, request: ChatRequest = REQ) -> list[ProviderEvent]:
    return [ev async for ev in case.provider.stream(request, case.model, KEY)]


def text(events: list[ProviderEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def test_text_arrives_exactly_with_usage_and_finish(case: Case, emu: Emulator) -> None:
    emu.script(Script(text="The quick brown fox", input_tokens=11, output_tokens=4))
    events = await collect(case)
    assert text(events) == "The quick brown fox"
    assert isinstance(events[-1], Finish) and events[-1].reason == "stop"
    usage = [e for e in events if isinstance(e, Usage)]
    assert usage == [Usage(11, 4, 0, 0)]
    rec = emu.last
    assert rec.provider == case.name and rec.model == case.model
    assert rec.key_suffix == "0001" and rec.completed


async def test_the_body_is_read_from_aiohttp_beneath_the_sdk(
    case: Case, emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDK sends the request; the body's chunks come from aiohttp's own reader, not through httpx2."""
    found: list[bool] = []
    aiohttp_read = sse._aiohttp_read

    def recorded(response: httpx2.Response) -> sse.Read | None:
        read = aiohttp_read(response)
        found.append(read is not None)
        return read

    monkeypatch.setattr(sse, "_aiohttp_read", recorded)
    emu.script(Script(text=("one", " two", " three")))
    assert text(await collect(case)) == "one two three"
    assert found == [True]


async def test_multibyte_utf8_split_across_http_chunks(case: Case, emu: Emulator) -> None:
    pieces = ("héllo ", "wörld ", "😀🚀", " 日本語", "ß")
    emu.script(Script(text=pieces, byte_split=3))
    events = await collect(case)
    assert text(events) == "".join(pieces)
    # Each event really was cut into 3-byte HTTP chunks, so characters straddled chunk borders.
    assert all(len(e) > 3 for e in emu.last.events)


async def test_usage_counts_cached_and_reasoning_tokens(case: Case, emu: Emulator) -> None:
    emu.script(
        Script(
            text=("ok",),
            thinking=("let me think about this carefully",),
            input_tokens=1000,
            cached_tokens=600,
            output_tokens=50,
            reasoning_tokens=30,
        )
    )
    events = await collect(case)
    assert text(events) == "ok"  # thoughts never leak into the answer
    (usage,) = [e for e in events if isinstance(e, Usage)]
    assert usage.input_tokens == 1000
    assert usage.cached_input_tokens == 600
    if case.name == "gemini":
        # Gemini reports thoughts apart from candidates; both are billed as output.
        assert (usage.output_tokens, usage.reasoning_tokens) == (80, 30)
    elif case.name == "openai":
        assert (usage.output_tokens, usage.reasoning_tokens) == (50, 30)
    else:
        # Anthropic folds thinking into output tokens: the share is estimated from the thinking text.
        assert usage.output_tokens == 50 and 0 < usage.reasoning_tokens < 50


async def test_tool_call_streams_as_tool_call_deltas(case: Case, emu: Emulator) -> None:
    emu.script(
        Script(
            text=(),
            tool_call=ToolCallScript("get_weather", ('{"city":', ' "Paris",', ' "unit": "C"}')),
            finish="tool_calls",
        )
    )
    events = await collect(case)
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert calls[0].name == "get_weather" and calls[0].id
    assert {c.index for c in calls} == {0}
    assert json.loads("".join(c.arguments for c in calls)) == {"city": "Paris", "unit": "C"}
    assert isinstance(events[-1], Finish) and events[-1].reason == "tool_calls"
    assert text(events) == ""


@pytest.mark.parametrize(("finish", "expected"), [("length", "length"), ("content_filter", "content_filter")])
async def test_finish_reasons_are_normalized(case: Case, emu: Emulator, finish: str, expected: str) -> None:
    emu.script(Script(text=("partial",), finish=finish))  # type: ignore[arg-type]
    events = await collect(case)
    assert events[-1] == Finish(expected)  # type: ignore[arg-type]


FAULTS = [
    pytest.param(Script(status=429, retry_after=7), errors.RateLimited, id="429"),
    pytest.param(Script(status=500), errors.ServerError, id="500"),
    pytest.param(Script(status=503), errors.Overloaded, id="503"),
    pytest.param(Script(status=529), errors.Overloaded, id="529"),
    pytest.param(Script(status=401), errors.AuthFailed, id="401"),
    pytest.param(Script(status=400, error_message="messages: field required"), errors.BadRequest, id="400"),
    pytest.param(Script(text=("a", "b", "c"), error_after=2), errors.ServerError, id="midstream-error"),
    pytest.param(
        Script(text=("a", "b", "c"), error_after=2, error_status=529), errors.Overloaded, id="midstream-overloaded"
    ),
    pytest.param(Script(text=("a", "b", "c"), drop_after=2), errors.ConnectionLost, id="dropped"),
    pytest.param(Script(text=("a", "b", "c"), no_finish=True), errors.Truncated, id="no-finish"),
]


@pytest.mark.parametrize(("script", "expected"), FAULTS)
async def test_faults_map_to_our_errors(
    case: Case, emu: Emulator, script: Script, expected: type[errors.ProviderError]
) -> None:
    emu.script(script)
    got: list[ProviderEvent] = []
    with pytest.raises(errors.ProviderError) as info:
        async for ev in case.provider.stream(REQ, case.model, KEY):
            got.append(ev)
    assert type(info.value) is expected, repr(info.value.__cause__)
    assert info.value.provider == case.name and info.value.model == case.model
    if isinstance(info.value, errors.RateLimited):
        assert info.value.retry_after == 7
    if script.error_after is not None or script.drop_after is not None:
        assert text(got) == "ab"  # what came before the fault was delivered
    if script.no_finish:
        assert text(got) == "abc"


async def test_prefill_refusal_is_its_own_error(case: Case, emu: Emulator) -> None:
    emu.script(
        Script(
            status=400,
            error_message="This model does not support assistant message prefill. "
            "The conversation must end with a user message.",
        )
    )
    req = ChatRequest((*REQ.messages, Message("assistant", "The answer is")))
    with pytest.raises(errors.PrefillRejected):
        await collect(case, req)


async def test_aclose_closes_the_upstream_response_at_once(case: Case, emu: Emulator) -> None:
    emu.script(Script(text=tuple(f"w{i} " for i in range(50)), delay=0.02))
    gen = case.provider.stream(REQ, case.model, KEY)
    first = await gen.__anext__()  # type: ignore[attr-defined]
    assert isinstance(first, TextDelta)
    await gen.aclose()  # type: ignore[attr-defined]
    assert await emu.wait_disconnect(timeout=DISCONNECT_WITHIN_S)
    assert emu.last.tokens_sent < 50


async def test_cancelling_a_stalled_stream_closes_upstream(case: Case, emu: Emulator) -> None:
    emu.script(Script(text=("a", "b", "c"), stall_after=2))
    got: list[str] = []

    async def consume() -> None:
        async for ev in case.provider.stream(REQ, case.model, KEY):
            if isinstance(ev, TextDelta):
                got.append(ev.text)

    task = asyncio.create_task(consume())
    assert await emu.wait_for(lambda: len(got) == 2, timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await emu.wait_disconnect(timeout=DISCONNECT_WITHIN_S)
    assert not emu.last.completed


async def test_connection_refused_is_connection_lost(case: Case) -> None:
    # A port nothing listens on: the SDK's connect error must come out as our ConnectionLost.
    dead = "http://127.0.0.1:9"
    provider: Provider
    if case.name == "openai":
        provider = OpenAIProvider("openai", dead + "/v1")
    elif case.name == "anthropic":
        provider = AnthropicProvider(dead)
    else:
        provider = GeminiProvider(dead)
    try:
        with pytest.raises(errors.ConnectionLost):
            await collect(Case(case.name, provider, case.model))
    finally:
        await provider.aclose()


def _short_timeout_provider(name: str, emu: Emulator) -> Provider:
    # A client cache whose pool gives up reading after 0.3 s: the SDK's own timeout path.
    import providers.anthropic as anthropic_mod
    import providers.gemini as gemini_mod
    import providers.openai as openai_mod

    timeout = httpx2.Timeout(connect=2.0, read=0.3, write=2.0, pool=2.0)
    if name == "openai":
        return OpenAIProvider(
            "openai", emu.openai_base_url, clients=ClientCache(openai_mod._make_client, timeout=timeout)
        )
    if name == "anthropic":
        return AnthropicProvider(
            emu.anthropic_base_url, clients=ClientCache(anthropic_mod._make_client, timeout=timeout)
        )
    return GeminiProvider(
        emu.gemini_base_url,
        clients=ClientCache(gemini_mod._make_client, timeout=timeout, pool_factory=gemini_mod._make_pool),
    )


@pytest.mark.parametrize("where", ["before-headers", "mid-stream"])
async def test_read_timeouts_are_upstream_timeouts(case: Case, emu: Emulator, where: str) -> None:
    provider = _short_timeout_provider(case.name, emu)
    emu.script(Script(first_delay=1.0) if where == "before-headers" else Script(text=("a", "b"), stall_after=1))
    try:
        with pytest.raises(errors.UpstreamTimeout):
            await collect(Case(case.name, provider, case.model))
    finally:
        await provider.aclose()
