"""The OpenAI Chat Completions face: a stream's events as `chat.completion.chunk`s over SSE, or as one
`chat.completion` body at the end.

What OpenAI has no field for (the fallbacks that happened, a seam, each segment's cost) travels in an extra
top-level `gateway` object, which the official clients keep as an extra attribute without complaint.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson
from starlette.responses import Response

from gateway.errors import error_response, openai_body
from gateway.faces import sse
from gateway.faces.answer import Gathered
from sessions.errors import GatewayError
from sessions.events import Delta, Done, Event, Fallback, Seam, Started, ToolCallDelta
from sessions.log import LogEntry

_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "content_filter": "content_filter"}


class Answer(Gathered):
    """What a Chat Completions reply says about one stream, kept up to date from its events."""

    def __init__(self, stream_id: str, model: str) -> None:
        super().__init__(stream_id, model)
        self.id = "chatcmpl-" + stream_id.removeprefix("st_")
        self.created = int(time.time())

    def finish_reason(self) -> str:
        reason = self.done.finish_reason if self.done is not None else None
        return _FINISH.get(str(reason), "stop")

    def usage(self) -> dict[str, int]:
        inp, out, _, _ = self.usage_totals()
        return {"prompt_tokens": inp, "completion_tokens": out, "total_tokens": inp + out}

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

    def completion(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.text) or None, "refusal": None}
        if self.tool_calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": "".join(c.arguments)}}
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


class CompletionChunks:
    """Streaming: one chunk per event the SDKs have a place for, `data: [DONE]` at the end. A failed stream
    ends with `data: {"error": …}`, which the official clients raise."""

    def __init__(self, answer: Answer, *, include_usage: bool) -> None:
        self.answer = answer
        self.include_usage = include_usage
        self._frame_model = ""
        self._frame_head = self._frame_tail = b""

    def events(self, batch: Sequence[LogEntry]) -> bytes | None:
        parts: list[bytes] = []
        for entry in batch:
            ev = entry.event
            if type(ev) is Delta:
                parts.append(self._delta_frame(ev.text))
                continue
            chunk = self._chunk(ev)
            if chunk is not None:
                parts += sse.data(orjson.dumps(chunk))
        return b"".join(parts) if parts else None

    def failed(self, error: GatewayError) -> bytes | None:
        self.answer.error = error
        return None

    def end(self) -> bytes | None:
        a = self.answer
        tail: list[bytes] = []
        if a.error is not None:
            tail += sse.data(orjson.dumps(openai_body(a.error)))
        elif self.include_usage:
            tail += sse.data(orjson.dumps({**a.chunk({}), "choices": [], "usage": a.usage()}))
        tail += sse.data(b"[DONE]")
        return b"".join(tail)

    def _chunk(self, ev: Event) -> dict[str, Any] | None:
        a = self.answer
        a.take(ev)
        if isinstance(ev, Started):
            return a.chunk({"role": "assistant", "content": ""})
        if isinstance(ev, ToolCallDelta):
            call: dict[str, Any] = {"index": ev.index, "function": {"arguments": ev.arguments}}
            if ev.call_id is not None:
                call["id"], call["type"] = ev.call_id, "function"
            if ev.name is not None:
                call["function"]["name"] = ev.name
            return a.chunk({"tool_calls": [call]})
        if isinstance(ev, Fallback):
            return a.chunk({}, gateway={"fallback": ev.wire()})
        if isinstance(ev, Seam):
            return a.chunk({}, gateway={"seam": ev.wire()})
        if isinstance(ev, Done):
            return a.chunk({}, a.finish_reason(), gateway=a.gateway())
        return None

    def _delta_frame(self, text: str) -> bytes:
        """A content chunk as a whole SSE frame, from a template: the per-token path builds no dict."""
        a = self.answer
        if self._frame_model != a.model:
            self._frame_model = a.model
            head = orjson.dumps(a.chunk({"content": ""}))
            # split the serialized chunk around the empty content string
            cut = head.index(b'"content":""') + len(b'"content":')
            self._frame_head, self._frame_tail = b"data: " + head[:cut], head[cut + 2 :] + b"\n\n"
        return self._frame_head + orjson.dumps(text) + self._frame_tail


class CompletionReply:
    """Not streaming: everything is gathered, then one `chat.completion` (or the error, with its status)."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer

    def events(self, batch: Sequence[LogEntry]) -> Response | None:
        take = self.answer.take
        for entry in batch:
            take(entry.event)
        return None

    def failed(self, error: GatewayError) -> Response | None:
        self.answer.error, self.answer.done = error, None
        return None

    def end(self) -> Response:
        a = self.answer
        if a.error is not None and a.done is None:
            return error_response(a.error, "openai")
        body = orjson.dumps(a.completion())
        return Response(body, media_type="application/json", headers={"x-stream-id": a.stream_id})
