"""The output items of a Responses API answer, and the stream events that build each one up, in the shapes the
official SDKs parse and accumulate (`openai.lib.streaming.responses`, the AI SDK's Responses provider).

An item is opened (`response.output_item.added`, then its first part), grows by deltas, and is closed
(`….done` events, then `response.output_item.done`) as `completed`, or only by `response.output_item.done` as
`incomplete` when a restart or a seam voids it (a voided item is left out of the response's final `output`) or
the answer failed.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson

from providers.events import TokenLogprob

Status = Literal["completed", "incomplete"]
Json = dict[str, Any]


def logprob_json(t: TokenLogprob) -> Json:
    out: Json = {"token": t.token, "logprob": t.logprob, "bytes": list(t.bytes) if t.bytes is not None else []}
    out["top_logprobs"] = [
        {"token": x.token, "logprob": x.logprob, "bytes": list(x.bytes) if x.bytes is not None else []} for x in t.top
    ]
    return out


class MessageItem:
    """An assistant message with one `output_text` part."""

    __slots__ = ("delta_head", "delta_mid", "id", "index", "logprobs", "status", "text")

    def __init__(self, item_id: str, index: int) -> None:
        self.id = item_id
        self.index = index
        self.text: list[str] = []
        self.logprobs: list[Json] = []
        self.status: Status | None = None  # None while open
        # An `output_text.delta` frame is these bytes around its sequence number and its text: no dict per token.
        self.delta_head = (
            b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","sequence_number":'
        )
        self.delta_mid = b',"item_id":"%s","output_index":%d,"content_index":0,"delta":' % (item_id.encode(), index)

    def delta_frame(self, seq: int, text: str) -> bytes:
        self.text.append(text)
        return b'%b%d%b%b,"logprobs":[]}\n\n' % (self.delta_head, seq, self.delta_mid, orjson.dumps(text))

    def part(self) -> Json:
        return {"type": "output_text", "text": "".join(self.text), "annotations": [], "logprobs": self.logprobs}

    def item(self) -> Json:
        status = self.status or "in_progress"
        content = [self.part()] if self.status is not None else []
        return {"id": self.id, "type": "message", "status": status, "role": "assistant", "content": content}

    def opened(self) -> list[Json]:
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        return [
            {"type": "response.output_item.added", "output_index": self.index, "item": self.item()},
            {"type": "response.content_part.added", **self._where(), "part": part},
        ]

    def logprobs_event(self, tokens: list[Json]) -> Json:
        self.logprobs.extend(tokens)
        return {"type": "response.output_text.delta", **self._where(), "delta": "", "logprobs": tokens}

    def closed(self) -> list[Json]:
        self.status = "completed"
        part = self.part()
        return [
            {"type": "response.output_text.done", **self._where(), "text": part["text"], "logprobs": self.logprobs},
            {"type": "response.content_part.done", **self._where(), "part": part},
            {"type": "response.output_item.done", "output_index": self.index, "item": self.item()},
        ]

    def abandoned(self) -> list[Json]:
        """Closed as `incomplete` (voided, or the answer failed): only `output_item.done`, since the SDKs parse the
        text of an `output_text.done` against the requested format, and this text is not a finished answer."""
        self.status = "incomplete"
        return [{"type": "response.output_item.done", "output_index": self.index, "item": self.item()}]

    def _where(self) -> Json:
        return {"item_id": self.id, "output_index": self.index, "content_index": 0}


class ReasoningItem:
    """The model's visible thinking, as one summary part; with `encrypted`, an `encrypted_content` that is null
    (asked for by `include`: the gateway has no provider reasoning to hand back)."""

    __slots__ = ("encrypted", "id", "index", "status", "text")

    def __init__(self, item_id: str, index: int, *, encrypted: bool = False) -> None:
        self.id = item_id
        self.index = index
        self.encrypted = encrypted
        self.text: list[str] = []
        self.status: Status | None = None

    def item(self) -> Json:
        summary = [{"type": "summary_text", "text": "".join(self.text)}] if self.status is not None else []
        out: Json = {"id": self.id, "type": "reasoning", "summary": summary, "status": self.status or "in_progress"}
        if self.encrypted:
            out["encrypted_content"] = None
        return out

    def opened(self) -> list[Json]:
        return [
            {"type": "response.output_item.added", "output_index": self.index, "item": self.item()},
            {"type": "response.reasoning_summary_part.added", **self._where(), "part": _summary("")},
        ]

    def delta(self, text: str) -> Json:
        self.text.append(text)
        return {"type": "response.reasoning_summary_text.delta", **self._where(), "delta": text}

    def closed(self) -> list[Json]:
        self.status = "completed"
        text = "".join(self.text)
        return [
            {"type": "response.reasoning_summary_text.done", **self._where(), "text": text},
            {"type": "response.reasoning_summary_part.done", **self._where(), "part": _summary(text)},
            {"type": "response.output_item.done", "output_index": self.index, "item": self.item()},
        ]

    def _where(self) -> Json:
        return {"item_id": self.id, "output_index": self.index, "summary_index": 0}


def _summary(text: str) -> Json:
    return {"type": "summary_text", "text": text}


class CallItem:
    """A function call, sent whole once the answer is done (a restart may still void it until then)."""

    __slots__ = ("arguments", "call_id", "id", "index", "name")

    def __init__(self, item_id: str, index: int, call_id: str, name: str, arguments: str) -> None:
        self.id = item_id
        self.index = index
        self.call_id = call_id
        self.name = name
        self.arguments = arguments

    def item(self, status: str = "completed") -> Json:
        args = self.arguments if status == "completed" else ""
        return {
            "id": self.id,
            "type": "function_call",
            "status": status,
            "call_id": self.call_id,
            "name": self.name,
            "arguments": args,
        }

    def events(self) -> list[Json]:
        where = {"item_id": self.id, "output_index": self.index}
        return [
            {"type": "response.output_item.added", "output_index": self.index, "item": self.item("in_progress")},
            {"type": "response.function_call_arguments.delta", **where, "delta": self.arguments},
            {"type": "response.function_call_arguments.done", **where, "name": self.name, "arguments": self.arguments},
            {"type": "response.output_item.done", "output_index": self.index, "item": self.item()},
        ]


Item = MessageItem | ReasoningItem | CallItem
