"""The official `openai` SDK's Responses API against the live gateway (the mock model): create, stream, the
stream helper's accumulated response, fallbacks that read as one answer, kept responses, errors as the SDK's own
exceptions."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI

from gateway.auth import DEV_USER_ID
from tests.conftest import Live
from tests.support.readme import run_python


@pytest.fixture
async def client(live: Live) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=f"{live.url}/v1", api_key=live.token, max_retries=0, timeout=20) as c:
        yield c


def extra(obj: Any) -> dict[str, Any]:
    assert obj.model_extra is not None
    gw: dict[str, Any] = obj.model_extra["gateway"]
    return gw


def messages_of(resp: Any) -> list[Any]:
    return [o for o in resp.output if o.type == "message"]


async def test_create_answers_one_response_with_usage_cost_and_the_asked_model(client: AsyncOpenAI) -> None:
    resp = await client.responses.create(model="mock", input="hello [[mock tokens=6]]", instructions="Be brief.")
    assert resp.object == "response" and resp.id.startswith("resp_") and resp.status == "completed"
    assert resp.model == "mock" and resp.instructions == "Be brief." and resp.error is None
    (msg,) = messages_of(resp)
    assert msg.role == "assistant" and msg.status == "completed" and msg.id.startswith("msg_")
    assert len(resp.output_text.split()) == 6 and msg.content[0].type == "output_text"
    assert resp.usage is not None and resp.usage.output_tokens == 6
    assert resp.usage.total_tokens == resp.usage.input_tokens + 6
    gw = extra(resp)
    assert gw["stream_id"] == "st_" + resp.id.removeprefix("resp_") and gw["fallbacks"] == []
    assert Decimal(gw["cost_usd"]) == Decimal(gw["segments"][0]["cost_usd"]) > 0


async def test_streaming_events_are_numbered_and_build_the_same_answer(client: AsyncOpenAI) -> None:
    plain = await client.responses.create(model="mock", input="same [[mock tokens=9]]")
    stream = await client.responses.create(model="mock", input="same [[mock tokens=9]]", stream=True)
    events = [e async for e in stream]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    types = [e.type for e in events]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) == 9 and "".join(e.delta for e in deltas) == plain.output_text
    assert len({e.item_id for e in deltas}) == 1
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.output_text == plain.output_text and completed.response.usage is not None
    assert len({e.response.id for e in events if hasattr(e, "response")}) == 1
    assert Decimal(extra(completed.response)["cost_usd"]) > 0


async def test_the_stream_helper_accumulates_a_fallen_back_answer_as_one(client: AsyncOpenAI) -> None:
    reference = await client.responses.create(model="mock", input="story [[mock tokens=10]]")
    async with client.responses.stream(
        model="mock",
        input="story [[mock tokens=10 fail_after=4 only=mock]]",
        extra_body={"fallbacks": ["mock-backup"]},
    ) as stream:
        events = [e async for e in stream]
        final = await stream.get_final_response()
    assert final.output_text == reference.output_text  # no word lost, none repeated
    notices = [e for e in events if e.type == "response.in_progress" and e.model_extra and "gateway" in e.model_extra]
    (notice,) = notices
    fb = extra(notice)["fallback"]
    assert (fb["from_model"], fb["to_model"], fb["reason"], fb["mode"]) == (
        "mock",
        "mock-backup",
        "server_error",
        "continue",
    )
    before = "".join(e.delta for e in events[: events.index(notice)] if e.type == "response.output_text.delta")
    assert fb["chars_so_far"] == len(before) and len(before.split()) == 4
    assert final.model == "mock"  # the model asked for; who answered is in the gateway field
    gw = extra(final)
    assert [(s["model"], s["status"]) for s in gw["segments"]] == [("mock", "failed"), ("mock-backup", "ok")]
    assert gw["estimated"] is True and [f["to_model"] for f in gw["fallbacks"]] == ["mock-backup"]


async def test_a_restart_closes_the_partial_message_and_the_final_output_is_the_new_answer(
    client: AsyncOpenAI,
) -> None:
    reference = await client.responses.create(model="mock", input="again [[mock tokens=8]]")
    async with client.responses.stream(
        model="mock",
        input="again [[mock tokens=8 fail_after=3 only=mock]]",
        extra_body={"fallbacks": ["mock-backup"], "on_midstream_failure": "restart"},
    ) as stream:
        events = [e async for e in stream]
        final = await stream.get_final_response()
    done = [e.item for e in events if e.type == "response.output_item.done"]
    assert [(i.type, i.status) for i in done] == [("message", "incomplete"), ("message", "completed")]
    assert len(done[0].content[0].text.split()) == 3  # what was streamed before the failure, closed as void
    (msg,) = messages_of(final)  # only the item that stands
    assert msg.id == done[1].id and final.output_text == reference.output_text
    restart = [e for e in events if e.type == "response.in_progress" and e.model_extra and "gateway" in e.model_extra]
    assert extra(restart[0])["fallback"]["mode"] == "restart"


async def test_a_rewritten_continuation_keeps_what_both_share_in_a_new_message(client: AsyncOpenAI) -> None:
    async with client.responses.stream(
        model="mock",
        input="tale [[mock tokens=12 fail_after=5 only=mock on_continue=rewrite]]",
        extra_body={"fallbacks": ["mock-backup"]},
    ) as stream:
        events = [e async for e in stream]
        final = await stream.get_final_response()
    seams = [extra(e)["seam"] for e in events if e.type == "response.in_progress" and "seam" in extra_or(e)]
    (seam,) = seams
    done = [e.item for e in events if e.type == "response.output_item.done"]
    assert [i.status for i in done] == ["incomplete", "completed"]
    streamed = done[0].content[0].text
    assert final.output_text.startswith(streamed[: seam["keep_chars"]])
    assert not final.output_text.startswith(streamed)  # the rewritten words are gone from the final answer
    plain = await client.responses.create(
        model="mock",
        input="tale [[mock tokens=12 fail_after=5 only=mock on_continue=rewrite]]",
        extra_body={"fallbacks": ["mock-backup"]},
    )
    assert plain.output_text == final.output_text  # a reply in one body applies the seam the same way


def extra_or(obj: Any) -> dict[str, Any]:
    return dict((obj.model_extra or {}).get("gateway") or {})


async def test_kept_responses_chain_and_can_be_read_and_deleted(client: AsyncOpenAI) -> None:
    first = await client.responses.create(model="mock", input="first question [[mock tokens=4]]")
    got = await client.responses.retrieve(first.id)
    assert got.output_text == first.output_text and got.id == first.id
    second = await client.responses.create(
        model="mock", input="and more [[mock tokens=5]]", previous_response_id=first.id
    )
    # The conversation went on from the first answer: the mock seeds its words from the first user turn.
    assert second.previous_response_id == first.id
    assert second.output_text.split()[:4] == first.output_text.split()[:4]
    await client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError) as gone:
        await client.responses.retrieve(first.id)
    assert gone.value.code == "response_not_found"
    with pytest.raises(openai.NotFoundError) as prev:
        await client.responses.create(model="mock", input="x", previous_response_id=first.id)
    assert prev.value.code == "response_not_found" and prev.value.param == "previous_response_id"
    unkept = await client.responses.create(model="mock", input="private [[mock tokens=2]]", store=False)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(unkept.id)


async def test_an_item_reference_names_an_item_of_a_kept_response(client: AsyncOpenAI) -> None:
    first = await client.responses.create(model="mock", input="origin [[mock tokens=3]]")
    (msg,) = messages_of(first)
    again = await client.responses.create(
        model="mock",
        input=[
            {"role": "user", "content": "origin"},
            {"type": "item_reference", "id": msg.id},
            {"role": "user", "content": "go on [[mock tokens=3]]"},
        ],
    )
    assert again.status == "completed"
    with pytest.raises(openai.NotFoundError) as unknown:
        await client.responses.create(model="mock", input=[{"type": "item_reference", "id": "msg_nothing_0"}])
    assert unknown.value.code == "response_not_found" and unknown.value.param == "input[0].id"


async def test_kept_responses_belong_to_their_user(live: Live, client: AsyncOpenAI) -> None:
    mine = await client.responses.create(model="mock", input="secret [[mock tokens=2]]")
    other = live.services.auth.mint_dev_token(user_id=str(uuid.uuid4()))
    async with httpx.AsyncClient(base_url=live.url) as http:
        r = await http.get(f"/v1/responses/{mine.id}", headers=live.headers(other))
        assert r.status_code == 404 and r.json()["error"]["code"] == "response_not_found"
        r = await http.delete(f"/v1/responses/{mine.id}", headers=live.headers(other))
        assert r.status_code == 404
    assert (await client.responses.retrieve(mine.id)).id == mine.id


async def test_fields_it_cannot_honour_are_refused_by_name(client: AsyncOpenAI) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"background": True}, "background"),
        ({"prompt_cache_key": "k"}, "prompt_cache_key"),
        ({"include": ["file_search_call.results"]}, "include"),
        ({"text": {"verbosity": "low"}}, "text.verbosity"),
        ({"truncation": "auto"}, "truncation"),
        ({"reasoning": {"effort": "high"}}, "reasoning.effort"),  # the mock model has no reasoning
        ({"tool_choice": {"type": "file_search"}}, "tool_choice"),
    ]
    for fields, param in cases:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.responses.create(model="mock", input="hi", **fields)
        assert refused.value.param == param, (fields, refused.value.body)
        assert refused.value.code in ("unsupported_parameter", "invalid_parameter"), refused.value.body
    with pytest.raises(openai.BadRequestError) as item:
        await client.responses.create(
            model="mock", input=[{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}]
        )
    assert item.value.param == "input[0].content[0].type" and item.value.code == "unsupported_parameter"
    with pytest.raises(openai.BadRequestError) as bad:
        await client.responses.create(model="mock", input="hi", max_output_tokens=0)
    assert bad.value.status_code == 400 and bad.value.param == "max_output_tokens"
    assert bad.value.code == "invalid_parameter" and bad.value.type == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as empty:
        await client.responses.create(model="mock", input=[], instructions="Be brief.")
    assert empty.value.param == "input" and empty.value.code == "invalid_parameter"
    # Fields sent as null, or as the API's own default, ask for nothing: they are accepted.
    ok = await client.responses.create(
        model="mock", input="hi [[mock tokens=2]]", extra_body={"background": False, "prompt_cache_key": None}
    )
    assert ok.status == "completed"


async def test_errors_reach_the_sdk_as_its_own_exceptions(live_factory: Callable[..., Any]) -> None:
    live: Live = await live_factory(gateway_starts_per_minute=2)  # the two doomed streams below, then a refusal
    async with AsyncOpenAI(base_url=f"{live.url}/v1", api_key=live.token, max_retries=0) as client:
        with pytest.raises(openai.NotFoundError) as nf:
            await client.responses.create(model="no-such-model", input="hi")
        assert nf.value.code == "unknown_model" and nf.value.param == "model"
        async with AsyncOpenAI(base_url=f"{live.url}/v1", api_key="not-a-token", max_retries=0) as bad:
            with pytest.raises(openai.AuthenticationError):
                await bad.responses.create(model="mock", input="hi")
        # Every model fails after the answer began: a stream ends with response.failed, a reply is a 502.
        stream = await client.responses.create(
            model="mock", input="doomed [[mock tokens=10 fail_after=3]]", stream=True
        )
        events = [e async for e in stream]
        failed = events[-1]
        assert failed.type == "response.failed" and failed.response.status == "failed"
        assert failed.response.error is not None and failed.response.error.code == "all_models_failed"
        assert [i.status for i in failed.response.output] == ["incomplete"]
        with pytest.raises(openai.InternalServerError) as plain:
            await client.responses.create(model="mock", input="doomed [[mock tokens=10 fail_after=3]]")
        assert plain.value.status_code == 502 and plain.value.code == "all_models_failed"
        with pytest.raises(openai.RateLimitError) as limited:
            await client.responses.create(model="mock", input="one too many")
        assert limited.value.code == "rate_limited" and limited.value.response.headers["retry-after"]


async def test_the_helper_raises_without_a_completed_response(client: AsyncOpenAI) -> None:
    async with client.responses.stream(model="mock", input="doomed [[mock tokens=6 fail_after=2]]") as stream:
        with pytest.raises(RuntimeError, match=r"response\.completed"):
            await stream.get_final_response()


async def test_a_cut_answer_is_incomplete(client: AsyncOpenAI) -> None:
    resp = await client.responses.create(model="mock", input="long [[mock tokens=20]]", max_output_tokens=5)
    assert resp.status == "incomplete" and resp.incomplete_details is not None
    assert resp.incomplete_details.reason == "max_output_tokens" and len(resp.output_text.split()) == 5


async def test_closing_the_stream_stops_generation(live: Live, client: AsyncOpenAI) -> None:
    stream = await client.responses.create(model="mock", input="long [[mock tokens=5000 delay_ms=2]]", stream=True)
    seen = []
    async for ev in stream:
        seen.append(ev)
        if len(seen) == 8:
            break
    await stream.close()
    sid = "st_" + seen[0].response.id.removeprefix("resp_")
    session = live.services.sessions.get(sid, DEV_USER_ID)
    async with asyncio.timeout(10):
        while not session.finished:
            await asyncio.sleep(0.02)
    assert session.record is not None and session.record.status == "cancelled"
    assert 0 < session.record.output_tokens < 5000


async def test_the_readme_snippet_runs(live: Live) -> None:
    words, cost = await run_python("responses", live)
    assert len(words.split()) == 40 and cost > 0
