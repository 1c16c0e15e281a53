"""Faces honour what the protocol tells a client to do with the text it holds (a seam keeps a prefix, a restart
drops it all), and the OpenAPI document declares the JSON bodies the routes read."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import orjson
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from gateway.faces.chat_completions import Answer, CompletionChunks
from gateway.faces.events import EventFrames
from gateway.faces.http import GatheredReply
from gateway.faces.socket import SocketFrames
from providers.events import Usage
from providers.segments import Segment
from sessions.events import Delta, Done, Event, Fallback, Seam, SegmentUsage, Started, StreamEncoder
from sessions.log import LogEntry, MemoryEventLog
from tests.conftest import Live
from tests.support.clients import user_msg

SID = "st_seamtest"


def logged(events: list[Event]) -> list[LogEntry]:
    log, enc = MemoryEventLog(), StreamEncoder(SID, "c1")
    for ev in events:
        log.append(ev, enc.encode(log.last_seq + 1, ev))
    return log.since(0)


def with_seam() -> list[LogEntry]:
    seg = Segment(1, "mock", "mock", "failed", "server_error", Usage(5, 4), True, Decimal("0.00001"))
    seg2 = Segment(2, "mock-backup", "mock", "ok", None, Usage(6, 2), False, Decimal("0.00002"))
    return logged(
        [
            Started("mock", "mock"),
            Delta("The quick"),
            Delta(" brown fix"),
            SegmentUsage(seg),
            Fallback("mock", "mock-backup", "server_error", 19, "continue"),
            Seam(keep_chars=15, discard_chars=4, reason="rewrite"),
            Delta(" fox jumps"),
            SegmentUsage(seg2),
            Done("stop", (seg, seg2)),
        ]
    )


def test_a_seam_cuts_the_non_streaming_answer_to_the_kept_prefix() -> None:
    reply = GatheredReply(Answer(SID, "mock"))
    reply.events(with_seam())
    response = reply.end()
    completion = ChatCompletion.model_validate_json(bytes(response.body))
    assert completion.choices[0].message.content == "The quick brown fox jumps"
    # the model asked for; the one that answered is in the gateway field
    assert completion.model == "mock" and completion.model_extra is not None
    assert completion.model_extra["gateway"]["model"] == "mock-backup"


def test_a_seam_reaches_streaming_clients_in_the_gateway_field() -> None:
    encoder = CompletionChunks(Answer(SID, "mock"), include_usage=False)
    out = encoder.events(with_seam())
    assert out is not None
    chunks = [
        ChatCompletionChunk.model_validate_json(line.removeprefix(b"data: "))
        for line in out.split(b"\n\n")
        if line.startswith(b"data: {")
    ]
    marks = [c for c in chunks if c.model_extra and "seam" in c.model_extra.get("gateway", {})]
    assert len(marks) == 1 and marks[0].choices[0].delta.content is None
    assert marks[0].model_extra is not None
    assert marks[0].model_extra["gateway"]["seam"] == {"keep_chars": 15, "discard_chars": 4, "reason": "rewrite"}
    # Applying it, as a client does, gives the same answer as the non-streaming reply.
    text = ""
    for c in chunks:
        seam = (c.model_extra or {}).get("gateway", {}).get("seam")
        if seam:
            text = text[: seam["keep_chars"]]
        elif c.choices:
            text += c.choices[0].delta.content or ""
    assert text == "The quick brown fox jumps"


def test_the_gateway_faces_pass_a_seam_as_it_was_encoded() -> None:
    entries = with_seam()
    seam = next(e for e in entries if e.name == "seam")
    assert orjson.loads(seam.data) == {
        "type": "seam",
        "stream_id": SID,
        "id": "c1",
        "seq": 6,
        "keep_chars": 15,
        "discard_chars": 4,
        "reason": "rewrite",
    }
    assert seam.data in (SocketFrames("c1", batch=False).events(entries) or [])
    sse = EventFrames(SID, "c1").events(entries) or b""
    assert b"event: seam\nid: " + SID.encode() + b":6\ndata: " + seam.data + b"\n\n" in sse


async def test_a_restart_drops_the_partial_answer_of_a_non_streaming_reply(live: Live) -> None:
    prompt = "again [[mock tokens=9 fail_after=4 only=mock]]"
    extra: dict[str, Any] = {"fallbacks": ["mock-backup"], "on_midstream_failure": "restart"}
    async with AsyncOpenAI(base_url=f"{live.url}/v1", api_key=live.token, max_retries=0, timeout=20) as sdk:
        stream = await sdk.chat.completions.create(
            model="mock",
            messages=user_msg(prompt),
            stream=True,
            extra_body=extra,  # type: ignore[arg-type]
        )
        chunks = [c async for c in stream]
        plain = await sdk.chat.completions.create(
            model="mock",
            messages=user_msg(prompt),
            extra_body=extra,  # type: ignore[arg-type]
        )
    mark = next(i for i, c in enumerate(chunks) if c.model_extra and "fallback" in c.model_extra.get("gateway", {}))
    assert chunks[mark].model_extra is not None and chunks[mark].model_extra["gateway"]["fallback"]["mode"] == "restart"
    before = "".join(c.choices[0].delta.content or "" for c in chunks[:mark] if c.choices)
    after = "".join(c.choices[0].delta.content or "" for c in chunks[mark:] if c.choices)
    assert len(before.split()) == 4 and len(after.split()) == 9
    assert plain.choices[0].message.content == after  # the restarted answer only


async def test_the_openapi_document_declares_every_json_body(live: Live) -> None:
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        doc = (await client.get("/openapi.json")).json()
    bodies = {
        ("/v1/chat/stream", "post"): "ChatBody",
        ("/v1/chat/completions", "post"): "CompletionBody",
        ("/v1/keys/{provider}", "put"): "KeyBody",
        ("/v1/budget", "put"): "BudgetBody",
    }
    for (path, method), model in bodies.items():
        body = doc["paths"][path][method]["requestBody"]
        assert body["required"] is True
        assert body["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{model}"}
    schemas = doc["components"]["schemas"]
    assert {"model", "messages", "fallbacks", "on_midstream_failure"} <= set(schemas["ChatBody"]["properties"])
    assert {"stream", "stream_options", "n"} <= set(schemas["CompletionBody"]["properties"])
    assert schemas["KeyBody"]["required"] == ["api_key"]
    messages = schemas["ChatBody"]["properties"]["messages"]["items"]["$ref"].rsplit("/", 1)[-1]
    assert messages in schemas  # nested models are components too
    assert "requestBody" not in doc["paths"]["/v1/keys/{provider}"]["get"]
