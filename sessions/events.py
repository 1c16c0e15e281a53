"""The client protocol: every event a stream sends, as a closed union of slotted dataclasses, and its JSON.

This module is the only place an event's fields are named. An event goes on the wire as one JSON object:
`{"type", "stream_id", "id", "seq", ...its fields}`. `StreamEncoder` makes those bytes once, when the event is
appended to the stream's log (a delta takes a path of its own: one dict, one `orjson.dumps`); local faces read
the typed event and the bytes from the log, never parsing JSON back. `decode` is the one way back, for events
read from another instance's shared log. A segment's own JSON is `sessions.segment_json`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar, Literal, cast

import orjson

from providers.events import TokenLogprob
from providers.segments import Segment
from sessions.segment_json import event_segment_json, money, segment_from_json

FallbackMode = Literal["continue", "restart"]


@dataclass(slots=True, frozen=True)
class Started:
    """`stream.started`: the first model of the chain that is being tried."""

    TYPE: ClassVar[str] = "stream.started"
    model: str
    provider: str

    def wire(self) -> dict[str, Any]:
        return {"model": self.model, "provider": self.provider}


@dataclass(slots=True)
class Delta:
    """The one event made per token: slotted but not frozen, because a frozen dataclass's constructor costs half
    as much again (it sets each field through `object.__setattr__`). Treat it as immutable all the same."""

    TYPE: ClassVar[str] = "delta"
    text: str

    def wire(self) -> dict[str, Any]:
        return {"text": self.text}


@dataclass(slots=True, frozen=True)
class ToolCallDelta:
    TYPE: ClassVar[str] = "tool_call.delta"
    index: int
    call_id: str | None
    name: str | None
    arguments: str

    def wire(self) -> dict[str, Any]:
        return {"index": self.index, "call_id": self.call_id, "name": self.name, "arguments": self.arguments}


@dataclass(slots=True, frozen=True)
class Reasoning:
    """`reasoning.delta`: a piece of the model's visible thinking (only when the request turned thinking on and
    the provider shows it). Never part of the answer text."""

    TYPE: ClassVar[str] = "reasoning.delta"
    text: str
    signature: str = ""  # ends a thinking block (Anthropic): send it back with the turn
    redacted: str = ""  # a redacted thinking block, whole (Anthropic)

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"text": self.text}
        if self.signature:
            out["signature"] = self.signature
        if self.redacted:
            out["redacted"] = self.redacted
        return out


@dataclass(slots=True, frozen=True)
class Logprobs:
    """`logprobs`: log probabilities of the answer tokens just streamed (only when the request asked for them)."""

    TYPE: ClassVar[str] = "logprobs"
    tokens: tuple[TokenLogprob, ...]

    def wire(self) -> dict[str, Any]:
        return {"tokens": [_logprob_json(t) for t in self.tokens]}


def _logprob_json(t: TokenLogprob) -> dict[str, Any]:
    return {
        "token": t.token,
        "logprob": t.logprob,
        "bytes": None if t.bytes is None else list(t.bytes),
        "top": [_logprob_json(x) for x in t.top],
    }


def _logprob_from(d: dict[str, Any]) -> TokenLogprob:
    raw = d.get("bytes")
    return TokenLogprob(
        str(d["token"]),
        float(d["logprob"]),
        None if raw is None else tuple(int(b) for b in raw),
        tuple(_logprob_from(x) for x in d.get("top", ())),
    )


@dataclass(slots=True, frozen=True)
class Fallback:
    TYPE: ClassVar[str] = "fallback"
    from_model: str
    to_model: str
    reason: str
    chars_so_far: int
    mode: FallbackMode

    def wire(self) -> dict[str, Any]:
        return {
            "from_model": self.from_model,
            "to_model": self.to_model,
            "reason": self.reason,
            "chars_so_far": self.chars_so_far,
            "mode": self.mode,
        }


@dataclass(slots=True, frozen=True)
class Seam:
    """`seam`: keep the first `keep_chars` characters of the answer text held so far, drop the other
    `discard_chars`; the next deltas continue from there."""

    TYPE: ClassVar[str] = "seam"
    keep_chars: int
    discard_chars: int
    reason: str

    def wire(self) -> dict[str, Any]:
        return {"keep_chars": self.keep_chars, "discard_chars": self.discard_chars, "reason": self.reason}


@dataclass(slots=True, frozen=True)
class SegmentUsage:
    """`usage`: one attempt (segment) has ended."""

    TYPE: ClassVar[str] = "usage"
    segment: Segment

    def wire(self) -> dict[str, Any]:
        return event_segment_json(self.segment)


@dataclass(slots=True, frozen=True)
class Skipped:
    """A model of the chain passed over without a request (`circuit_open`, `no_key`, `context_too_small`, …)."""

    model: str
    provider: str
    reason: str


@dataclass(slots=True, frozen=True)
class Done:
    TYPE: ClassVar[str] = "done"
    finish_reason: str | None
    segments: tuple[Segment, ...]
    skipped: tuple[Skipped, ...] = ()
    stop_sequence: str | None = None  # which stop sequence ended the answer (only where the provider says)

    def wire(self) -> dict[str, Any]:
        segs = self.segments
        out: dict[str, Any] = {
            "finish_reason": self.finish_reason,
            "usage": {
                "input_tokens": sum(s.usage.input_tokens for s in segs),
                "output_tokens": sum(s.usage.output_tokens for s in segs),
                "cached_input_tokens": sum(s.usage.cached_input_tokens for s in segs),
                "cache_write_input_tokens": sum(s.usage.cache_write_input_tokens for s in segs),
                "estimated": any(s.estimated for s in segs),
            },
            "cost_usd": money(self.cost_usd),
            "segments": [event_segment_json(s) for s in segs],
            "skipped": [{"model": k.model, "provider": k.provider, "reason": k.reason} for k in self.skipped],
        }
        if self.stop_sequence is not None:
            out["stop_sequence"] = self.stop_sequence
        return out

    @property
    def cost_usd(self) -> Decimal:
        return sum((s.cost_usd for s in self.segments), Decimal(0))


@dataclass(slots=True, frozen=True)
class Tried:
    """A model the stream tried (or skipped), and why it did not answer."""

    model: str
    reason: str
    provider: str | None = None
    segment: int | None = None  # the attempt's number; None for a model skipped without a request
    provider_code: str | None = None  # the provider's own answer, as in `usage`
    provider_message: str | None = None

    def wire(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "provider": self.provider,
            "reason": self.reason,
            "segment": self.segment,
            "provider_code": self.provider_code,
            "provider_message": self.provider_message,
        }


@dataclass(slots=True, frozen=True)
class Refused:
    """The frame an `error` refuses: its `type`, None when it had none."""

    frame: str | None


@dataclass(slots=True, frozen=True)
class Error:
    """`error`: the last event of a failed stream (with `attempts`); or, outside the stream's log (no `seq`,
    `stream_id: null`), the end of a follow that cannot go on, or (with `refused`) the refusal of one frame."""

    TYPE: ClassVar[str] = "error"
    code: str
    message: str
    retryable: bool = False
    attempts: tuple[Tried, ...] | None = None
    retry_after_s: float | None = None
    refused: Refused | None = None

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message, "retryable": self.retryable}
        if self.attempts is not None:
            out["attempts"] = [a.wire() for a in self.attempts]
        if self.retry_after_s is not None:
            out["retry_after_s"] = round(self.retry_after_s, 3)
        if self.refused is not None:
            out["frame"] = self.refused.frame
        return out


@dataclass(slots=True, frozen=True)
class Draining:
    TYPE: ClassVar[str] = "server.draining"
    reconnect_after_ms: int
    message: str

    def wire(self) -> dict[str, Any]:
        return {"reconnect_after_ms": self.reconnect_after_ms, "message": self.message}


Event = (
    Started | Delta | ToolCallDelta | Reasoning | Logprobs | Fallback | Seam | SegmentUsage | Done | Error | Draining
)
EVENT_TYPES: tuple[type[Event], ...] = (
    Started,
    Delta,
    ToolCallDelta,
    Reasoning,
    Logprobs,
    Fallback,
    Seam,
    SegmentUsage,
    Done,
    Error,
    Draining,
)


# -- bytes --------------------------------------------------------------------------------------------------------


class StreamEncoder:
    """Events of one stream to the bytes every face built on the gateway's protocol sends (WebSocket, SSE)."""

    __slots__ = ("client_id", "stream_id")

    def __init__(self, stream_id: str, client_id: str | None) -> None:
        self.stream_id = stream_id
        self.client_id = client_id

    def encode(self, seq: int, event: Event) -> bytes:
        head = {"type": event.TYPE, "stream_id": self.stream_id, "id": self.client_id, "seq": seq}
        return orjson.dumps({**head, **event.wire()})

    def delta(self, seq: int, text: str) -> bytes:
        """`encode(seq, Delta(text))`, on the per-token path: one dict, one dumps."""
        return orjson.dumps(
            {"type": "delta", "stream_id": self.stream_id, "id": self.client_id, "seq": seq, "text": text}
        )


def encode_outside(event: Error, client_id: str | None) -> bytes:
    """An `error` that is not part of the stream's log: no `seq`, `stream_id: null` (the follow ended, or one
    frame was refused; the stream itself may still be running)."""
    return orjson.dumps({"type": event.TYPE, "stream_id": None, "id": client_id, **event.wire()})


class DecodeError(ValueError):
    """Bytes that are not an event of this protocol."""


def decode(data: bytes) -> Event:
    """One event back from its bytes (as read from another instance's shared log)."""
    try:
        d = orjson.loads(data)
        return _DECODERS[d["type"]](d)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise DecodeError(f"not an event: {type(exc).__name__}: {exc}") from None


def _error(d: dict[str, Any]) -> Error:
    attempts = d.get("attempts")
    return Error(
        code=str(d["code"]),
        message=str(d["message"]),
        retryable=bool(d["retryable"]),
        attempts=None if attempts is None else tuple(_tried(a) for a in attempts),
        retry_after_s=d.get("retry_after_s"),
        refused=Refused(d["frame"]) if "frame" in d else None,
    )


def _tried(a: dict[str, Any]) -> Tried:
    return Tried(
        str(a["model"]),
        str(a["reason"]),
        a.get("provider"),
        a.get("segment"),
        a.get("provider_code"),
        a.get("provider_message"),
    )


def _done(d: dict[str, Any]) -> Done:
    skipped = tuple(Skipped(k["model"], k["provider"], k["reason"]) for k in d.get("skipped", ()))
    segments = tuple(segment_from_json(s) for s in d["segments"])
    return Done(d["finish_reason"], segments, skipped, d.get("stop_sequence"))


_DECODERS: dict[str, Callable[[dict[str, Any]], Event]] = {
    Started.TYPE: lambda d: Started(d["model"], d["provider"]),
    Delta.TYPE: lambda d: Delta(d["text"]),
    ToolCallDelta.TYPE: lambda d: ToolCallDelta(d["index"], d["call_id"], d["name"], d["arguments"]),
    Reasoning.TYPE: lambda d: Reasoning(d["text"], d.get("signature", ""), d.get("redacted", "")),
    Logprobs.TYPE: lambda d: Logprobs(tuple(_logprob_from(t) for t in d["tokens"])),
    Fallback.TYPE: lambda d: Fallback(
        d["from_model"], d["to_model"], d["reason"], d["chars_so_far"], cast(FallbackMode, d["mode"])
    ),
    Seam.TYPE: lambda d: Seam(d["keep_chars"], d["discard_chars"], d["reason"]),
    SegmentUsage.TYPE: lambda d: SegmentUsage(segment_from_json(d)),
    Done.TYPE: _done,
    Error.TYPE: _error,
    Draining.TYPE: lambda d: Draining(d["reconnect_after_ms"], d["message"]),
}
