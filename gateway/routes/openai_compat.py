"""OpenAI-compatible `POST /v1/chat/completions`, so any OpenAI SDK or tool can use the gateway as its base URL.

The API key is the gateway's own bearer token. Streams use the exact chunk format of the Chat Completions API;
what OpenAI has no field for (the fallbacks that happened, each segment's cost) travels in an extra top-level
`gateway` object, which the official clients keep as an extra attribute without complaint. `fallbacks` and
`on_midstream_failure` are accepted as extra body fields (`extra_body` in the SDKs).

Closing the connection stops the stream at once (the partial output is billed): OpenAI clients never resume.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from gateway.deps import CurrentUser, ServicesDep
from gateway.errors import error_response
from gateway.routes.streams import read_json_body
from gateway.schemas import ChatBody, describe, to_start_params
from gateway.sse import SSE_HEADERS, SSEChannel, run_until_first, wait_disconnect
from sessions.log import ResumeTooOld
from sessions.manager import SessionManager
from sessions.stream import StreamSession

router = APIRouter(tags=["openai"])

_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "content_filter": "content_filter"}
# Terminal errors of a stream that never answered, as HTTP statuses for the non-streaming reply.
_ERROR_STATUS = {
    "budget_exceeded": 402,
    "bad_request": 400,
    "context_length_exceeded": 400,
    "content_filtered": 400,
    "draining": 503,
    "midstream_failed": 502,
}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    include_usage: bool = False


class CompletionBody(ChatBody):
    """The Chat Completions request; fields we do not implement (top_p, seed, user, …) are ignored."""

    stream: bool = False
    stream_options: StreamOptions | None = None
    max_completion_tokens: int | None = Field(None, ge=1, le=1_000_000)
    n: int = Field(1, ge=1, le=1)


def _openai_error(status: int, code: str, message: str) -> Response:
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


class Translator:
    """Turns the session's events into Chat Completions chunks, and remembers what the final reply needs."""

    def __init__(self, stream_id: str, model: str) -> None:
        self.id = "chatcmpl-" + stream_id.removeprefix("st_")
        self.stream_id = stream_id
        self.created = int(time.time())
        self.model = model
        self.text: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.fallbacks: list[dict[str, Any]] = []
        self.segments: list[dict[str, Any]] = []
        self.done: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self._frame_model = ""
        self._frame_head = self._frame_tail = b""

    def chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            **extra,
        }

    def delta_frame(self, text: str) -> bytes:
        """A content chunk as a whole SSE frame, from a template: the per-token path builds no dict."""
        if self._frame_model != self.model:
            self._frame_model = self.model
            head = orjson.dumps(self.chunk({"content": ""}))
            # split the serialized chunk around the empty content string
            cut = head.index(b'"content":""') + len(b'"content":')
            self._frame_head, self._frame_tail = b"data: " + head[:cut], head[cut + 2 :] + b"\n\n"
        return self._frame_head + orjson.dumps(text) + self._frame_tail

    def finish_reason(self) -> str:
        reason = self.done.get("finish_reason") if self.done else None
        return _FINISH.get(str(reason), "stop")

    def usage(self) -> dict[str, int]:
        u = self.done["usage"] if self.done else {"input_tokens": 0, "output_tokens": 0}
        return {
            "prompt_tokens": u["input_tokens"],
            "completion_tokens": u["output_tokens"],
            "total_tokens": u["input_tokens"] + u["output_tokens"],
        }

    def gateway(self) -> dict[str, Any]:
        return {
            "stream_id": self.stream_id,
            "cost_usd": self.done["cost_usd"] if self.done else None,
            "estimated": bool(self.done and self.done["usage"]["estimated"]),
            "fallbacks": self.fallbacks,
            "segments": self.done["segments"] if self.done else self.segments,
        }

    def feed(self, name: str, ev: dict[str, Any]) -> dict[str, Any] | None:
        """One session event; returns a chunk to send, if any."""
        if name == "delta":
            self.text.append(ev["text"])
            return self.chunk({"content": ev["text"]})
        if name == "stream.started":
            self.model = ev["model"]
            return self.chunk({"role": "assistant", "content": ""})
        if name == "tool_call.delta":
            call: dict[str, Any] = {"index": ev["index"], "function": {"arguments": ev["arguments"]}}
            known = self.tool_calls.setdefault(ev["index"], {"id": None, "name": None, "arguments": []})
            if ev["call_id"] is not None:
                call["id"], call["type"] = ev["call_id"], "function"
                known["id"] = ev["call_id"]
            if ev["name"] is not None:
                call["function"]["name"] = ev["name"]
                known["name"] = ev["name"]
            known["arguments"].append(ev["arguments"])
            return self.chunk({"tool_calls": [call]})
        if name == "fallback":
            fb = {k: ev[k] for k in ("from_model", "to_model", "reason", "chars_so_far", "mode")}
            self.fallbacks.append(fb)
            self.model = ev["to_model"]
            return self.chunk({}, gateway={"fallback": fb})
        if name == "usage":
            self.segments.append({k: v for k, v in ev.items() if k not in ("type", "stream_id", "id", "seq")})
            return None
        if name == "done":
            self.done = ev
            return self.chunk({}, self.finish_reason(), gateway=self.gateway())
        if name == "error":
            self.error = {"code": ev["code"], "message": ev["message"]}
        elif name == "server.draining":
            self.error = {"code": "draining", "message": ev["message"]}
        return None

    def completion(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.text) or None, "refusal": None}
        if self.tool_calls:
            message["tool_calls"] = [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": "".join(c["arguments"])},
                }
                for _, c in sorted(self.tool_calls.items())
            ]
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": self.finish_reason()}],
            "usage": self.usage(),
            "gateway": self.gateway(),
        }


class CompletionResponse(Response):
    """Follows one session and answers as Chat Completions: SSE chunks, or one JSON body at the end."""

    def __init__(
        self, session: StreamSession, manager: SessionManager, *, stream: bool, include_usage: bool, ping_s: float
    ) -> None:
        self.session = session
        self.manager = manager
        self.stream = stream
        self.include_usage = include_usage
        self.ping_s = ping_s
        self.status_code = 200
        self.background = None
        self.tr = Translator(session.id, session.chain[0].id)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.manager.attach(self.session)
        finished = False
        try:
            if self.stream:
                channel = SSEChannel(send, receive, self.ping_s)
                await channel.start([*SSE_HEADERS, (b"x-stream-id", self.session.id.encode())])
                finished = await channel.run(lambda: self._stream(channel))
                if finished:
                    await channel.end()
            else:
                finished = await run_until_first(lambda: self._collect(send), lambda: wait_disconnect(receive))
        finally:
            if not finished:
                self.session.cancel("client")  # the caller went away: stop generating (partial output billed)
            self.manager.detach(self.session)

    async def _stream(self, channel: SSEChannel) -> None:
        dumps, loads, feed, frame = orjson.dumps, orjson.loads, self.tr.feed, self.tr.delta_frame
        try:
            async for batch in self.session.log.follow(0):
                parts: list[bytes] = []
                for entry in batch:
                    ev = loads(entry.data)
                    if entry.name == "delta":
                        parts.append(frame(ev["text"]))
                        continue
                    chunk = feed(entry.name, ev)
                    if chunk is not None:
                        parts += (b"data: ", dumps(chunk), b"\n\n")
                if parts:
                    await channel.write(b"".join(parts))
        except ResumeTooOld as exc:  # the stream outran its bounded log before this reader caught up
            self.tr.error = {"code": exc.code, "message": str(exc)}
        tail: list[bytes] = []
        if self.tr.error is not None:
            # The official clients raise an APIError on a chunk with an `error` key.
            err = {"error": {**self.tr.error, "type": "server_error", "param": None}}
            tail += (b"data: ", dumps(err), b"\n\n")
        elif self.include_usage:
            usage = {**self.tr.chunk({}), "choices": [], "usage": self.tr.usage()}
            tail += (b"data: ", dumps(usage), b"\n\n")
        tail.append(b"data: [DONE]\n\n")
        await channel.write(b"".join(tail))

    async def _collect(self, send: Send) -> None:
        feed, loads = self.tr.feed, orjson.loads
        try:
            async for batch in self.session.log.follow(0):
                for entry in batch:
                    feed(entry.name, loads(entry.data))
        except ResumeTooOld as exc:
            self.tr.error, self.tr.done = {"code": exc.code, "message": str(exc)}, None
        if self.tr.error is not None and self.tr.done is None:
            code = self.tr.error["code"]
            reply = _openai_error(_ERROR_STATUS.get(code, 502), code, self.tr.error["message"])
        else:
            reply = Response(
                orjson.dumps(self.tr.completion()),
                media_type="application/json",
                headers={"x-stream-id": self.session.id},
            )
        await reply({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(request: Request, user: CurrentUser, services: ServicesDep) -> Response:
    s = services.settings
    raw = await read_json_body(request, s.gateway_max_frame_bytes)
    if isinstance(raw, Response):
        return raw
    try:
        body = CompletionBody.model_validate_json(raw)
    except ValidationError as exc:
        code = "invalid_json" if any(e["type"] == "json_invalid" for e in exc.errors()) else "invalid_request"
        return error_response(422, code, describe(exc))
    if body.max_completion_tokens is not None:
        body = body.model_copy(update={"max_tokens": body.max_completion_tokens})
    params = to_start_params(
        body,
        request.headers.get("x-client-id"),
        max_messages=s.gateway_max_messages,
        max_prompt_chars=s.gateway_max_prompt_chars,
    )
    session = await services.sessions.start(user.user_id, params)
    include_usage = body.stream_options is not None and body.stream_options.include_usage
    return CompletionResponse(
        session, services.sessions, stream=body.stream, include_usage=include_usage, ping_s=s.gateway_sse_ping_s
    )
