"""The OpenAI Chat Completions face: a stream's events as `chat.completion.chunk`s over SSE, or as one
`chat.completion` body at the end (the reply's JSON is `completion_answer.Answer`).

A streaming reply holds its response headers until the answer begins (its first text, tool call, reasoning or
log probabilities, or its end), so a stream that fails before that answers as OpenAI does: with the error's own
status (`429` with `Retry-After` when every model was rate limited, `400` for a request a provider refused, ...),
which the SDKs raise as their own exception classes. After that it can only end with `data: {"error": ...}`.
A heartbeat due before the answer begins sends the headers (and then the held chunks follow as usual).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import Receive, Send

from gateway.errors import error_response, openai_body
from gateway.faces import sse
from gateway.faces.completion_answer import Answer, logprob_json
from sessions.errors import GatewayError
from sessions.events import Delta, Done, Event, Fallback, Logprobs, Reasoning, Seam, Started, ToolCallDelta
from sessions.log import LogEntry

__all__ = ["Answer", "CompletionChunks", "HeldSSEChannel", "Out"]

# The events that begin the answer: the held chunks go out with the first of them.
_BEGINS = (Delta, ToolCallDelta, Reasoning, Logprobs, Done, Seam)

Out = bytes | Response


class CompletionChunks:
    """Streaming: one chunk per event the SDKs have a place for, `data: [DONE]` at the end. A stream that fails
    after it began ends with `data: {"error": …}`, which the official clients raise; one that fails before
    ends with the error as an HTTP response (see the module's docstring)."""

    def __init__(self, answer: Answer, *, include_usage: bool) -> None:
        self.answer = answer
        self.include_usage = include_usage
        self._frame_head = b"data: " + orjson.dumps(answer.chunk({"content": ""}))
        cut = self._frame_head.index(b'"content":""') + len(b'"content":')
        self._frame_head, self._frame_tail = self._frame_head[:cut], self._frame_head[cut + 2 :] + b"\n\n"
        self._held: list[bytes] | None = []  # None once the answer began

    def events(self, batch: Sequence[LogEntry]) -> Out | None:
        parts: list[bytes] = []
        for entry in batch:
            ev = entry.event
            if type(ev) is Delta and self._held is None:  # the per-token path: no dict, one dumps
                parts += (self._frame_head, orjson.dumps(ev.text), self._frame_tail)
                continue
            if self._held is not None and isinstance(ev, _BEGINS):
                parts += self._held
                self._held = None
            if type(ev) is Delta:
                parts += (self._frame_head, orjson.dumps(ev.text), self._frame_tail)
                self.answer.take(ev)
                continue
            chunk = self._chunk(ev)
            if chunk is not None:
                (parts if self._held is None else self._held).extend(sse.data(orjson.dumps(chunk)))
        return b"".join(parts) if parts else None

    def failed(self, error: GatewayError) -> Out | None:
        self.answer.error = error
        return None

    def end(self) -> Out | None:
        a = self.answer
        if a.error is not None and self._held is not None:
            return error_response(a.error, "openai")  # nothing was sent: answer with the error's own status
        tail: list[bytes] = list(self._held or ())
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
        if isinstance(ev, Reasoning):
            # A signature (Anthropic's, ending a thinking block) has no place in Chat Completions.
            return a.chunk({"reasoning_content": ev.text}) if ev.text else None
        if isinstance(ev, Logprobs):
            out = a.chunk({})
            out["choices"][0]["logprobs"] = {"content": [logprob_json(t) for t in ev.tokens], "refusal": None}
            return out
        if isinstance(ev, Fallback):
            return a.chunk({}, gateway={"fallback": ev.wire()})
        if isinstance(ev, Seam):
            return a.chunk({}, gateway={"seam": ev.wire()})
        if isinstance(ev, Done):
            return a.chunk({}, a.finish_reason(), gateway=a.gateway())
        return None


class HeldSSEChannel(sse.SSEChannel):
    """An SSE channel whose response starts with the first bytes sent; a `Response` sent before that is the
    whole answer instead (the error of a stream that failed before it began)."""

    def __init__(self, send: Send, receive: Receive, *, ping_s: float, headers: Sequence[tuple[bytes, bytes]]) -> None:
        super().__init__(send, receive, ping_s=ping_s, headers=headers, face="openai", hold=True)
        self._raw_send = send
        self._answered = False

    async def send(self, out: Out) -> None:  # type: ignore[override]
        if not isinstance(out, Response):
            await super().send(out)
        elif not self.started:
            self._answered = True
            await out({"type": "http"}, _no_receive, self._raw_send)

    async def finish(self, completed: bool) -> None:
        if not self._answered:
            await super().finish(completed)


async def _no_receive() -> dict[str, Any]:
    return {"type": "http.disconnect"}
