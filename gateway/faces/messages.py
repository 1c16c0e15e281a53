"""The Anthropic Messages face: a stream's events as the Messages API's event stream (`MessageEvents`), or as one
`message` body (`MessageAnswer`, gathered by `http.GatheredReply`).

Streaming follows the API's order: `message_start`, a `ping`, then per content block `content_block_start`,
its deltas (`text_delta`, `input_json_delta`, `thinking_delta`) and `content_block_stop`, and at the end
`message_delta` (stop reason and usage) and `message_stop`; a failure after the start is an `error` event.
Any model may answer: the `model` field names the model asked for, whatever served it.

What the API has no field for travels in an extra `gateway` object: on the final `message_delta` and on the
body (stream id, cost, fallbacks, seams, segments, skipped models), and on `ping` events as a fallback or a seam
happens (the SDKs skip pings). A continuation goes on in the block it continues. A streaming client cannot take
back text, so after a restart or a seam the final `gateway` object also carries `content`: the message as the
body would have it (what a non-streaming reply answers).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

import orjson
from starlette.responses import Response

from gateway.errors import anthropic_body, error_response
from gateway.faces import sse
from gateway.faces.failure import error_of
from providers.segments import Segment
from sessions.errors import GatewayError
from sessions.events import (
    Delta,
    Done,
    Draining,
    Error,
    Event,
    Fallback,
    Reasoning,
    Seam,
    SegmentUsage,
    ToolCallDelta,
)
from sessions.log import LogEntry
from sessions.segment_json import event_segment_json

BlockKind = Literal["text", "thinking", "redacted_thinking", "tool_use"]
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}


class _Block:
    __slots__ = ("id", "kind", "name", "parts", "signature")

    def __init__(self, kind: BlockKind, id: str | None = None, name: str | None = None) -> None:
        self.kind: BlockKind = kind
        self.id = id
        self.name = name
        self.parts: list[str] = []
        self.signature = ""  # a thinking block's, once the provider signed it (the block is then closed)

    def json(self) -> dict[str, Any]:
        joined = "".join(self.parts)
        if self.kind == "text":
            return {"type": "text", "text": joined}
        if self.kind == "thinking":
            return {"type": "thinking", "thinking": joined, "signature": self.signature}
        if self.kind == "redacted_thinking":
            return {"type": "redacted_thinking", "data": joined}
        try:
            args = json.loads(joined) if joined else {}
        except ValueError:
            args = {}
        return {"type": "tool_use", "id": self.id, "name": self.name, "input": args if isinstance(args, dict) else {}}


def tool_use_id(stream_id: str, index: int) -> str:
    """For a provider that names no call (Gemini): an id unique to the stream and the call."""
    return f"toolu_{stream_id.removeprefix('st_')}_{index}"


class MessageAnswer:
    """The message a stream's events make, as a non-streaming reply answers it: a restart voids what came
    before, a seam cuts the text."""

    def __init__(self, stream_id: str, model: str) -> None:
        self.id = "msg_" + stream_id.removeprefix("st_")
        self.stream_id = stream_id
        self.model = model  # the model asked for
        self.blocks: list[_Block] = []
        self.tools: dict[int, _Block] = {}
        self.fallbacks: list[dict[str, Any]] = []
        self.seams: list[dict[str, Any]] = []
        self.segments: list[Segment] = []
        self.done: Done | None = None
        self.error: GatewayError | None = None
        self.rewritten = False  # text already streamed is not part of the message

    def take(self, ev: Event) -> None:
        if type(ev) is Delta:
            self.add("text", ev.text)
        elif isinstance(ev, Reasoning):
            self.think(ev)
        elif isinstance(ev, ToolCallDelta):
            block = self.tools.get(ev.index)
            if block is None:
                block = self.tools[ev.index] = _Block("tool_use", ev.call_id, ev.name)
                block.id = block.id or tool_use_id(self.stream_id, ev.index)
                self.blocks.append(block)
            block.parts.append(ev.arguments)
        elif isinstance(ev, Fallback):
            self.fallbacks.append(ev.wire())
            if ev.mode == "restart":  # the next model starts over: what came before is void
                self.blocks.clear()
                self.tools.clear()
                self.rewritten = True
        elif isinstance(ev, Seam):
            self.seams.append(ev.wire())
            self._cut(ev.keep_chars)
            self.rewritten = True
        elif isinstance(ev, SegmentUsage):
            self.segments.append(ev.segment)
        elif isinstance(ev, Done):
            self.done = ev
        elif isinstance(ev, Error | Draining):
            self.error = error_of(ev)

    def think(self, ev: Reasoning) -> None:
        if ev.redacted:
            block = _Block("redacted_thinking")
            block.parts.append(ev.redacted)
            self.blocks.append(block)
            return
        self.add("thinking", ev.text)
        if ev.signature:
            self.blocks[-1].signature = ev.signature

    def add(self, kind: BlockKind, text: str) -> None:
        blocks = self.blocks
        if blocks and blocks[-1].kind == kind and not blocks[-1].signature:
            blocks[-1].parts.append(text)
        else:
            block = _Block(kind)
            block.parts.append(text)
            blocks.append(block)

    def _cut(self, keep: int) -> None:
        """Keep the first `keep` characters of the answer's text (its text blocks, in order)."""
        kept: list[_Block] = []
        for block in self.blocks:
            if block.kind == "text":
                text = "".join(block.parts)[: max(0, keep)]
                keep -= len(text)
                if not text:
                    continue
                block.parts[:] = [text]
            kept.append(block)
        self.blocks[:] = kept

    # -- what the client is shown -----------------------------------------------------------------------------------

    def stop_reason(self) -> str:
        if self.stop_sequence() is not None:
            return "stop_sequence"
        reason = self.done.finish_reason if self.done is not None else None
        return STOP_REASONS.get(str(reason), "end_turn")

    def stop_sequence(self) -> str | None:
        return self.done.stop_sequence if self.done is not None else None

    def usage(self) -> dict[str, int]:
        """Anthropic's usage: `input_tokens` counts only what was neither read from nor written to the cache."""
        segs = self.done.segments if self.done is not None else self.segments
        read = sum(s.usage.cached_input_tokens for s in segs)
        written = sum(s.usage.cache_write_input_tokens for s in segs)
        total = sum(s.usage.input_tokens for s in segs)
        return {
            "input_tokens": max(0, total - read - written),
            "output_tokens": sum(s.usage.output_tokens for s in segs),
            "cache_creation_input_tokens": written,
            "cache_read_input_tokens": read,
        }

    def content(self) -> list[dict[str, Any]]:
        return [b.json() for b in self.blocks if b.kind != "text" or b.parts]

    def gateway(self) -> dict[str, Any]:
        done = self.done
        segs = done.segments if done is not None else self.segments
        return {
            "stream_id": self.stream_id,
            "cost_usd": str(done.cost_usd) if done is not None else None,
            "estimated": any(s.estimated for s in segs),
            "fallbacks": self.fallbacks,
            "seams": self.seams,
            "segments": [event_segment_json(s) for s in segs],
            "skipped": [
                {"model": k.model, "provider": k.provider, "reason": k.reason}
                for k in (done.skipped if done is not None else ())
            ],
        }

    def fail(self, error: GatewayError) -> None:
        self.error, self.done = error, None

    def reply(self) -> Response:
        """The whole answer: one `message` (or the error, with its status)."""
        if self.error is not None and self.done is None:
            return error_response(self.error, "anthropic")
        headers = {"x-stream-id": self.stream_id, "request-id": self.id}
        return Response(orjson.dumps(self.message()), media_type="application/json", headers=headers)

    def message(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": self.content(),
            "stop_reason": self.stop_reason(),
            "stop_sequence": self.stop_sequence(),
            "usage": self.usage(),
            "gateway": self.gateway(),
        }


def _frame(name: bytes, payload: dict[str, Any]) -> list[bytes]:
    return sse.event(name, orjson.dumps(payload))


class MessageEvents:
    """Streaming: the Messages API's events. Blocks are numbered as they were sent, which after a restart or a
    seam is not the message's own content (see the module docstring)."""

    def __init__(self, answer: MessageAnswer) -> None:
        self.answer = answer
        self._started = False
        self._ended = False
        self._open: int | None = None  # the index of the block being streamed
        self._open_kind: BlockKind | None = None
        self._count = 0  # blocks sent
        self._tool_blocks: dict[int, int] = {}  # tool call index -> block index
        self._text_index = -1
        self._text_head = b""

    def events(self, batch: Sequence[LogEntry]) -> bytes | None:
        parts: list[bytes] = [] if self._started else self._start()
        answer = self.answer
        for entry in batch:
            ev = entry.event
            if type(ev) is Delta:  # the per-token path: one append to the answer, one frame from a template
                answer.add("text", ev.text)
                if self._open_kind != "text":
                    parts += self._open_block({"type": "text", "text": ""}, "text")
                parts.append(self._text_frame(ev.text))
            else:
                answer.take(ev)
                parts += self._other(ev)
        return b"".join(parts) if parts else None

    def failed(self, error: GatewayError) -> bytes | None:
        self.answer.error = error
        return b"".join(self._error(error))

    def end(self) -> bytes | None:
        return None if self._started else b"".join(self._start())

    # -- frames --------------------------------------------------------------------------------------------------

    def _start(self) -> list[bytes]:
        self._started = True
        a = self.answer
        message: dict[str, Any] = {
            "id": a.id,
            "type": "message",
            "role": "assistant",
            "model": a.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
            "gateway": {"stream_id": a.stream_id},
        }
        return [
            *_frame(b"message_start", {"type": "message_start", "message": message}),
            *_frame(b"ping", {"type": "ping"}),
        ]

    def _other(self, ev: Event) -> list[bytes]:
        if isinstance(ev, Reasoning):
            return self._thinking(ev)
        if isinstance(ev, ToolCallDelta):
            return self._tool(ev)
        if isinstance(ev, Fallback):
            out = _frame(b"ping", {"type": "ping", "gateway": {"fallback": ev.wire()}})
            if ev.mode == "restart":  # the next model's answer starts in blocks of its own
                self._tool_blocks.clear()
                return self._close_block() + out
            return out
        if isinstance(ev, Seam):
            return _frame(b"ping", {"type": "ping", "gateway": {"seam": ev.wire()}})
        if isinstance(ev, Done):
            return self._finish()
        if isinstance(ev, Error | Draining) and not self._ended:
            return self._error(error_of(ev))
        return []

    def _thinking(self, ev: Reasoning) -> list[bytes]:
        if ev.redacted:  # a block of its own, whole
            out = self._open_block({"type": "redacted_thinking", "data": ev.redacted}, "redacted_thinking")
            return out + self._close_block()
        out = []
        if self._open_kind != "thinking":
            out += self._open_block({"type": "thinking", "thinking": "", "signature": ""}, "thinking")
        if ev.text:
            out += self._delta(self._open, {"type": "thinking_delta", "thinking": ev.text})
        if ev.signature:  # the provider signed the block: it is over
            out += self._delta(self._open, {"type": "signature_delta", "signature": ev.signature})
            out += self._close_block()
        return out

    def _tool(self, ev: ToolCallDelta) -> list[bytes]:
        index = self._tool_blocks.get(ev.index)
        out: list[bytes] = []
        if index is None:
            block = self.answer.tools[ev.index]  # the answer took this event first
            start: dict[str, Any] = {"type": "tool_use", "id": block.id, "name": block.name, "input": {}}
            out += self._open_block(start, "tool_use")
            index = self._tool_blocks[ev.index] = self._count - 1
        if ev.arguments:
            out += self._delta(index, {"type": "input_json_delta", "partial_json": ev.arguments})
        return out

    def _open_block(self, block: dict[str, Any], kind: BlockKind) -> list[bytes]:
        out = self._close_block()
        index = self._count
        self._count += 1
        self._open, self._open_kind = index, kind
        return out + _frame(
            b"content_block_start", {"type": "content_block_start", "index": index, "content_block": block}
        )

    def _close_block(self) -> list[bytes]:
        if self._open is None:
            return []
        index, self._open, self._open_kind = self._open, None, None
        return _frame(b"content_block_stop", {"type": "content_block_stop", "index": index})

    def _delta(self, index: int | None, delta: dict[str, Any]) -> list[bytes]:
        return _frame(b"content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})

    def _text_frame(self, text: str) -> bytes:
        """A text delta as a whole frame from a template: the per-token path builds no dict."""
        if self._text_index != self._open:
            self._text_index = self._open if self._open is not None else -1
            self._text_head = (
                b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
                + str(self._text_index).encode()
                + b',"delta":{"type":"text_delta","text":'
            )
        return self._text_head + orjson.dumps(text) + b"}}\n\n"

    def _finish(self) -> list[bytes]:
        a = self.answer
        self._ended = True
        gateway = a.gateway()
        if a.rewritten:
            gateway["content"] = a.content()
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": a.stop_reason(), "stop_sequence": a.stop_sequence()},
            "usage": a.usage(),
            "gateway": gateway,
        }
        return [
            *self._close_block(),
            *_frame(b"message_delta", delta),
            *_frame(b"message_stop", {"type": "message_stop"}),
        ]

    def _error(self, error: GatewayError) -> list[bytes]:
        self._ended = True
        return _frame(b"error", anthropic_body(error))
