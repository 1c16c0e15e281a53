"""The official `anthropic` SDK pointed at the gateway's Messages API: create and stream, the wire order the SDK
accumulates, fallbacks and seams, the gateway's extra field, count_tokens, and every error as the SDK's class."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import anthropic
import httpx
import pytest
from anthropic import AsyncAnthropic
from fastapi import APIRouter

from gateway.errors import ANTHROPIC_STATUS, TABLE, speaking
from sessions.errors import KINDS, GatewayError, Kind
from tests.conftest import Live
from tests.support.clients import SSEEvent, iter_sse

ASK = "Tell me about foxes."


@pytest.fixture
async def client(live: Live) -> AsyncIterator[AsyncAnthropic]:
    # No retries: a test must see the first answer, not a retried one.
    async with AsyncAnthropic(base_url=live.url, api_key=live.token, max_retries=0, timeout=20) as c:
        yield c


def turn(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def extra(obj: Any) -> dict[str, Any]:
    """The gateway's extra field, as the SDK keeps it."""
    assert obj.model_extra is not None
    gw: dict[str, Any] = obj.model_extra["gateway"]
    return gw


async def raw_events(live: Live, body: dict[str, Any], **headers: str) -> list[SSEEvent]:
    """The event stream as sent, `event:` names and all."""
    out: list[SSEEvent] = []
    async with (
        httpx.AsyncClient(base_url=live.url, timeout=20) as c,
        c.stream(
            "POST",
            "/v1/messages",
            json={"max_tokens": 512, "stream": True, **body},
            headers={"x-api-key": live.token, "anthropic-version": "2023-06-01", **headers},
        ) as r,
    ):
        assert r.status_code == 200, await r.aread()
        assert r.headers["content-type"].startswith("text/event-stream")
        async for ev in iter_sse(r):
            if isinstance(ev, SSEEvent):
                out.append(ev)
    return out


async def test_create_answers_one_message(client: AsyncAnthropic) -> None:
    msg = await client.messages.create(
        model="mock", max_tokens=256, system="Be brief.", messages=turn(f"{ASK} [[mock tokens=6]]")
    )
    assert msg.type == "message" and msg.role == "assistant" and msg.id.startswith("msg_")
    assert msg.model == "mock" and msg.stop_reason == "end_turn" and msg.stop_sequence is None
    [block] = msg.content
    assert block.type == "text" and len(block.text.split()) == 6
    assert msg.usage.output_tokens == 6 and msg.usage.input_tokens > 0
    assert (msg.usage.cache_read_input_tokens, msg.usage.cache_creation_input_tokens) == (0, 0)
    gw = extra(msg)
    assert gw["stream_id"] == "st_" + msg.id.removeprefix("msg_")
    assert gw["fallbacks"] == [] and gw["seams"] == [] and [s["model"] for s in gw["segments"]] == ["mock"]
    assert Decimal(gw["cost_usd"]) == Decimal(gw["segments"][0]["cost_usd"]) > 0
    raw = await client.messages.with_raw_response.create(model="mock", max_tokens=9, messages=turn("x"))
    assert raw.headers["request-id"].startswith("msg_") and raw.headers["x-stream-id"].startswith("st_")


async def test_stream_gives_the_same_message_event_by_event(client: AsyncAnthropic, live: Live) -> None:
    prompt = f"{ASK} [[mock tokens=12]]"
    plain = await client.messages.create(model="mock", max_tokens=256, messages=turn(prompt))
    async with client.messages.stream(model="mock", max_tokens=256, messages=turn(prompt)) as stream:
        pieces = [t async for t in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(pieces) == final.content[0].text == plain.content[0].text  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 12
    assert final.usage.input_tokens == plain.usage.input_tokens

    raw = await client.messages.create(model="mock", max_tokens=256, messages=turn(prompt), stream=True)
    kinds = [ev.type async for ev in raw]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]

    events = await raw_events(live, {"model": "mock", "messages": turn(prompt)})
    names = [e.event for e in events]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert names[3:-3] == ["content_block_delta"] * 12
    assert all(e.data["type"] == e.event for e in events)
    start = events[0].data["message"]
    assert (start["role"], start["content"], start["stop_reason"], start["model"]) == ("assistant", [], None, "mock")
    assert events[2].data == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    assert events[3].data["delta"]["type"] == "text_delta" and events[3].data["index"] == 0
    delta = events[-2].data
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 12
    assert Decimal(delta["gateway"]["cost_usd"]) > 0 and delta["gateway"]["segments"][0]["model"] == "mock"


async def test_a_stream_that_falls_back_mid_answer_reads_as_one_message(client: AsyncAnthropic, live: Live) -> None:
    reference = await client.messages.create(model="mock", max_tokens=256, messages=turn("story [[mock tokens=10]]"))
    prompt = "story [[mock tokens=10 fail_after=4 only=mock]]"
    body: dict[str, Any] = {"fallbacks": ["mock-backup"]}
    async with client.messages.stream(model="mock", max_tokens=256, messages=turn(prompt), extra_body=body) as s:
        final_event = None
        async for ev in s:
            if ev.type == "message_delta":
                final_event = ev
        final = await s.get_final_message()
    # One text block, continued where the failed model stopped: no word lost, none repeated.
    assert [b.type for b in final.content] == ["text"]
    assert final.content[0].text == reference.content[0].text  # type: ignore[union-attr]
    assert final.model == "mock"  # the model asked for; the one that answered is in `gateway`
    assert final_event is not None
    gw = extra(final_event)
    [fb] = gw["fallbacks"]
    assert (fb["from_model"], fb["to_model"], fb["reason"], fb["mode"]) == (
        "mock",
        "mock-backup",
        "server_error",
        "continue",
    )
    assert [(x["model"], x["status"]) for x in gw["segments"]] == [("mock", "failed"), ("mock-backup", "ok")]
    assert Decimal(gw["cost_usd"]) == sum(Decimal(x["cost_usd"]) for x in gw["segments"])
    assert "content" not in gw  # nothing streamed was taken back

    # On the wire the fallback is announced on a ping, between the deltas it separates.
    events = await raw_events(live, {"model": "mock", "messages": turn(prompt), **body})
    [i] = [n for n, e in enumerate(events) if e.event == "ping" and "gateway" in e.data]
    assert events[i].data["gateway"]["fallback"]["to_model"] == "mock-backup"
    assert sum(e.event == "content_block_delta" for e in events[:i]) == 4

    plain = await client.messages.create(model="mock", max_tokens=256, messages=turn(prompt), extra_body=body)
    assert plain.content[0].text == reference.content[0].text  # type: ignore[union-attr]
    assert [f["to_model"] for f in extra(plain)["fallbacks"]] == ["mock-backup"]


async def test_a_repeated_prefix_is_cut_and_a_rewrite_is_told(client: AsyncAnthropic) -> None:
    reference = await client.messages.create(model="mock", max_tokens=256, messages=turn("r [[mock tokens=12]]"))
    want = reference.content[0].text  # type: ignore[union-attr]
    body: dict[str, Any] = {"fallbacks": ["mock-backup"]}
    # The next model starts the answer again: the gateway cuts the repeat, the SDK accumulates one answer.
    repeat = "r [[mock tokens=12 fail_after=5 only=mock on_continue=repeat]]"
    async with client.messages.stream(model="mock", max_tokens=256, messages=turn(repeat), extra_body=body) as s:
        final = await s.get_final_message()
    assert final.content[0].text == want  # type: ignore[union-attr]

    # The next model rewrites it: streamed text cannot be taken back, so the final message_delta carries the seam
    # and the message as it stands; the non-streaming body applies the seam itself.
    rewrite = "r [[mock tokens=12 fail_after=5 only=mock on_continue=rewrite]]"
    async with client.messages.stream(model="mock", max_tokens=256, messages=turn(rewrite), extra_body=body) as s:
        deltas = [ev async for ev in s if ev.type == "message_delta"]
    gw = extra(deltas[0])
    [seam] = gw["seams"]
    assert seam["reason"] == "continuation_restarted" and seam["discard_chars"] > 0
    [block] = gw["content"]
    plain = await client.messages.create(model="mock", max_tokens=256, messages=turn(rewrite), extra_body=body)
    assert block == {"type": "text", "text": plain.content[0].text}  # type: ignore[union-attr]
    assert extra(plain)["seams"] == [seam]


async def test_a_restart_voids_the_blocks_before_it(client: AsyncAnthropic) -> None:
    prompt = turn("again [[mock tokens=9 fail_after=4 only=mock]]")
    body: dict[str, Any] = {"fallbacks": ["mock-backup"], "on_midstream_failure": "restart"}
    plain = await client.messages.create(model="mock", max_tokens=256, messages=prompt, extra_body=body)
    async with client.messages.stream(model="mock", max_tokens=256, messages=prompt, extra_body=body) as s:
        deltas = [ev async for ev in s if ev.type == "message_delta"]
        final = await s.get_final_message()
    # The partial answer stays in its own (closed) block; the new model's answer starts a block of its own.
    void, answer = final.content
    assert len(void.text.split()) == 4 and answer.text == plain.content[0].text  # type: ignore[union-attr]
    gw = extra(deltas[0])
    assert [f["mode"] for f in gw["fallbacks"]] == ["restart"]
    assert gw["content"] == [{"type": "text", "text": answer.text}]  # type: ignore[union-attr]
    assert len(plain.content) == 1 and extra(plain)["fallbacks"] == gw["fallbacks"]


async def test_bearer_auth_and_the_version_header(live: Live) -> None:
    async with AsyncAnthropic(base_url=live.url, auth_token=live.token, max_retries=0, timeout=20) as c:
        msg = await c.messages.create(
            model="mock",
            max_tokens=32,
            messages=turn("hi [[mock tokens=3]]"),
            extra_headers={"anthropic-version": "2023-06-01", "anthropic-beta": "prompt-caching-2024-07-31"},
        )
    assert len(msg.content[0].text.split()) == 3  # type: ignore[union-attr]


async def test_count_tokens_is_an_estimate(client: AsyncAnthropic) -> None:
    text = "word " * 40
    got = await client.messages.count_tokens(model="mock", system="Be brief.", messages=turn(text))
    assert got.input_tokens == (len("Be brief.") + 3) // 4 + (len(text) + 3) // 4
    assert got.model_extra == {"gateway": {"estimated": True}}
    tool: Any = {"name": "lookup", "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}
    more = await client.messages.count_tokens(model="mock", messages=turn(text), tools=[tool])
    assert more.input_tokens > (len(text) + 3) // 4
    with pytest.raises(anthropic.NotFoundError):
        await client.messages.count_tokens(model="nope", messages=turn(text))


# -- errors, as the SDK raises them ------------------------------------------------------------------------------

SDK_ERRORS: dict[int, type[anthropic.APIStatusError]] = {
    400: anthropic.BadRequestError,
    401: anthropic.AuthenticationError,
    402: anthropic.PaymentRequiredError,
    403: anthropic.PermissionDeniedError,
    404: anthropic.NotFoundError,
    409: anthropic.ConflictError,
    413: anthropic.ContentTooLargeError,
    429: anthropic.RateLimitError,
    502: anthropic.InternalServerError,
    503: anthropic.ServiceUnavailableError,
    529: anthropic.OverloadedError,
}


def sdk_class(status: int) -> type[anthropic.APIStatusError]:
    return SDK_ERRORS.get(status, anthropic.InternalServerError if status >= 500 else anthropic.APIStatusError)


@pytest.fixture
def probed(live: Live) -> Live:
    speaks = APIRouter(route_class=speaking("anthropic"))

    @speaks.post("/probe/{kind}/v1/messages")
    async def probe(kind: str) -> None:
        assert kind in KINDS
        k: Kind = kind  # type: ignore[assignment]
        limited = kind == "limited"
        raise GatewayError(k, f"probe_{kind}", f"a {kind} error", retry_after_s=2.5 if limited else None)

    live.app.include_router(speaks)
    return live


async def test_every_kind_as_the_sdk_raises_it(probed: Live) -> None:
    for kind, row in TABLE.items():
        status = ANTHROPIC_STATUS.get(kind, row.status)
        async with AsyncAnthropic(base_url=f"{probed.url}/probe/{kind}", api_key="k", max_retries=0) as sdk:
            with pytest.raises(anthropic.APIStatusError) as raised:
                await sdk.messages.create(model="mock", max_tokens=5, messages=turn("hi"))
        exc = raised.value
        assert type(exc) is sdk_class(status), kind
        assert (exc.status_code, exc.type, exc.api_message) == (status, row.anthropic, f"a {kind} error"), kind
        assert exc.body == {"type": "error", "error": {"type": row.anthropic, "message": f"a {kind} error"}}
        if kind == "limited":
            assert exc.response.headers["retry-after"] == "3"
    assert ANTHROPIC_STATUS == {"invalid": 400, "unavailable": 529}
    assert TABLE["unavailable"].anthropic == "overloaded_error" and TABLE["limited"].anthropic == "rate_limit_error"


async def expect_error(sdk: AsyncAnthropic, error: type[anthropic.APIStatusError], kind: str, **kw: Any) -> str:
    call: dict[str, Any] = {"model": "mock", "max_tokens": 64, "messages": turn("hi")} | kw
    with pytest.raises(anthropic.APIStatusError) as raised:
        await sdk.messages.create(**call)
    assert type(raised.value) is error, raised.value
    assert raised.value.type == kind, raised.value.body
    message = raised.value.api_message
    assert message is not None
    return message


async def test_real_errors_of_the_messages_face(live_factory: Callable[..., Any]) -> None:
    gw: Live = await live_factory(gateway_starts_per_minute=12)
    async with AsyncAnthropic(base_url=gw.url, api_key=gw.token, max_retries=0, timeout=20) as sdk:
        bad = anthropic.BadRequestError
        assert "max_tokens" in await expect_error(sdk, bad, "invalid_request_error", max_tokens=anthropic.omit)
        said = await expect_error(sdk, bad, "invalid_request_error", service_tier="auto")
        assert said == "service_tier: Extra inputs are not permitted"
        server_tool: Any = {"type": "web_search_20250305", "name": "web_search"}
        said = await expect_error(sdk, bad, "invalid_request_error", tools=[server_tool])
        assert "tools.0" in said and "'web_search_20250305' is a server tool" in said
        doc: Any = [{"role": "user", "content": [{"type": "document", "source": {"type": "text", "data": "x"}}]}]
        assert "'document'" in await expect_error(sdk, bad, "invalid_request_error", messages=doc)
        said = await expect_error(
            sdk, bad, "invalid_request_error", extra_headers={"anthropic-beta": "context-1m-2025-08-07"}
        )
        # A beta feature is Claude's to provide: a model of another provider is refused by name.
        assert said == "anthropic-beta: mock has no Anthropic beta features (context-1m-2025-08-07)"
        said = await expect_error(sdk, bad, "invalid_request_error", extra_headers={"anthropic-beta": "x y"})
        assert said == "anthropic-beta: 'x y' is not a beta feature name (or one too many)"
        said = await expect_error(
            sdk, bad, "invalid_request_error", model="gpt-5-mini", extra_body={"temperature": 0.5}
        )
        assert said.startswith("temperature: gpt-5-mini takes only the default temperature")
        tools: Any = [{"name": "a", "input_schema": {"type": "object"}}]
        said = await expect_error(
            sdk, bad, "invalid_request_error", tools=tools, tool_choice={"type": "tool", "name": "b"}
        )
        assert said == "tool_choice.name: no tool named 'b' in tools"
        await expect_error(sdk, anthropic.NotFoundError, "not_found_error", model="nope")
        await expect_error(sdk, anthropic.PermissionDeniedError, "permission_error", model="gpt-5-mini")
        said = await expect_error(
            sdk,
            anthropic.BadRequestError,
            "invalid_request_error",
            messages=turn("no [[mock fail_after=0 fail=bad_request]]"),
        )
        assert said.startswith("every model failed: mock: bad_request")
        await expect_error(
            sdk, anthropic.InternalServerError, "api_error", messages=turn("doomed [[mock tokens=9 fail_after=2]]")
        )
    for key, code in (("not-a-token", "malformed"), ("sk-ant-api03-abcdefgh", "Anthropic API key")):
        async with AsyncAnthropic(base_url=gw.url, api_key=key, max_retries=0) as bad_key:
            said = await expect_error(bad_key, anthropic.AuthenticationError, "authentication_error")
        assert code in said and key not in said
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as c:
        r = await c.post("/v1/messages", json={"model": "mock", "max_tokens": 5, "messages": turn("hi")})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


async def test_rate_limits_and_overload_as_the_api_answers_them(live_factory: Callable[..., Any]) -> None:
    gw: Live = await live_factory(gateway_starts_per_minute=2)
    async with AsyncAnthropic(base_url=gw.url, api_key=gw.token, max_retries=0, timeout=20) as sdk:
        # Every model of the chain rate limited before any output: a 429, streaming or not.
        limited = turn("busy [[mock fail_after=0 fail=rate_limited]]")
        await expect_error(sdk, anthropic.RateLimitError, "rate_limit_error", messages=limited)
        with pytest.raises(anthropic.RateLimitError):
            async with sdk.messages.stream(model="mock", max_tokens=64, messages=limited) as s:
                await s.get_final_message()
        # The gateway's own limit on starts: 429 with Retry-After.
        with pytest.raises(anthropic.RateLimitError) as raised:
            await sdk.messages.create(model="mock", max_tokens=64, messages=turn("third"))
        assert int(raised.value.response.headers["retry-after"]) >= 1


async def test_overloaded_everywhere_is_a_529(live: Live) -> None:
    async with AsyncAnthropic(base_url=live.url, api_key=live.token, max_retries=0, timeout=20) as sdk:
        over = turn("busy [[mock fail_after=0 fail=overloaded]]")
        await expect_error(sdk, anthropic.OverloadedError, "overloaded_error", messages=over)
        with pytest.raises(anthropic.OverloadedError):
            async with sdk.messages.stream(model="mock", max_tokens=64, messages=over) as s:
                await s.get_final_message()


async def test_a_failure_after_output_is_an_error_event(client: AsyncAnthropic, live: Live) -> None:
    prompt = turn("half [[mock tokens=10 fail_after=3]]")
    body: dict[str, Any] = {"on_midstream_failure": "error"}
    got: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as raised:
        async with client.messages.stream(model="mock", max_tokens=64, messages=prompt, extra_body=body) as s:
            async for t in s.text_stream:
                got.append(t)
    assert len(got) == 3 and raised.value.type == "api_error"
    assert raised.value.body["error"]["message"].startswith("every model failed")  # type: ignore[index]
    events = await raw_events(live, {"model": "mock", "messages": prompt, **body})
    assert events[-1].event == "error" and events[-1].data["error"]["type"] == "api_error"
    assert "message_stop" not in [e.event for e in events]


async def test_what_the_ai_sdk_sends_is_taken(live: Live) -> None:
    """@ai-sdk/anthropic streams with `eager_input_streaming` on each tool and names the betas it relies on."""
    tool = {
        "name": "weather",
        "description": "weather",
        "input_schema": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "properties": {}},
        "eager_input_streaming": True,
    }
    betas = "fine-grained-tool-streaming-2025-05-14,structured-outputs-2025-11-13"
    events = await raw_events(
        live,
        {"model": "mock", "messages": turn("hi [[mock tokens=3]]"), "tools": [tool], "tool_choice": {"type": "auto"}},
        **{"anthropic-beta": betas},
    )
    assert events[-1].event == "message_stop"


async def test_the_anthropic_sdk_lists_and_retrieves_models(client: AsyncAnthropic, live: Live) -> None:
    page = await client.models.list()
    ids = [m.id for m in page.data]
    assert "mock" in ids and "mock-backup" in ids
    assert page.has_more is False and (page.first_id, page.last_id) == (ids[0], ids[-1])
    assert all(m.type == "model" and m.display_name == m.id for m in page.data)
    one = await client.models.retrieve("mock")
    assert (one.id, one.type) == ("mock", "model")
    with pytest.raises(anthropic.NotFoundError):
        await client.models.retrieve("no-such-model")
    # The same list is the OpenAI SDK's (its own fields are all there too).
    async with httpx.AsyncClient(base_url=live.url, headers={"authorization": f"Bearer {live.token}"}) as http:
        listed = (await http.get("/v1/models")).json()
    assert listed["object"] == "list" and listed["data"][0]["object"] == "model"
