"""What the gateway sends that more than one route shows, as pydantic models for the OpenAPI document: money,
segments, finished streams, and the JSON of every event of the gateway's protocol and of live spend.

The JSON itself is written elsewhere, once (`sessions.events`, `sessions.segment_json`, `gateway.bus.base`); these
models only describe it. Routes that return dicts name a model as `response_model`, so FastAPI checks the dict on the
way out; the event models are checked against real streams by `tests/test_openapi.py`, and against the union itself
(the same fields for every event) by `tests/test_protocol_doc.py`: `sessions.events` stays the one place an event is
defined.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from gateway.openapi import SSE

# Money on the wire: US dollars as a decimal string (exact, never a float, never in exponent form).
Money = Annotated[str, Field(pattern=r"^-?[0-9]+(\.[0-9]+)?$", examples=["0.0123"])]
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SegmentJson(_Out):
    """One attempt on one model (`sessions.segment_json`)."""

    segment: int
    model: str
    provider: str
    status: Literal["ok", "failed", "cancelled"]
    reason: str | None
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int = Field(description="Input tokens read from the provider's prompt cache.")
    cache_write_input_tokens: int = Field(description="Input tokens written to the provider's prompt cache.")
    reasoning_tokens: int
    cost_usd: Money
    estimated: bool
    ttft_ms: float | None
    provider_code: str | None = Field(description="On a failed attempt: the provider's own error code.")
    provider_message: str | None = Field(description="On a failed attempt: the provider's message (cut, keys masked).")


class EventSegmentJson(SegmentJson):
    """A segment in a stream's own events, which also say how long the gateway took to fail over to it."""

    failover_ms: float | None


class StreamRowJson(_Out):
    """A finished stream as the usage API and live spend show it."""

    stream_id: str
    user_id: str
    requested_model: str
    status: Literal["done", "error", "cancelled", "budget_exceeded"]
    finish_reason: str | None
    error_code: str | None
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_input_tokens: int
    cost_usd: Money
    estimated: bool
    fallbacks: int
    started_at: Timestamp
    ended_at: Timestamp
    duration_ms: float
    ttft_ms: float | None
    segments: list[SegmentJson]


# -- the gateway's protocol: each event's JSON (`sessions.events`) ------------------------------------------------


class _Event(_Out):
    stream_id: str
    id: str | None = Field(description="The client's id for the stream (`X-Client-Id`, a WebSocket frame's `id`).")
    seq: int = Field(ge=1, description="Its position in the stream: resume after it.")


class StartedEvent(_Event):
    type: Literal["stream.started"]
    model: str
    provider: str


class DeltaEvent(_Event):
    type: Literal["delta"]
    text: str


class ToolCallDeltaEvent(_Event):
    type: Literal["tool_call.delta"]
    index: int
    call_id: str | None
    name: str | None
    arguments: str


class ReasoningEvent(_Event):
    type: Literal["reasoning.delta"]
    text: str
    signature: str | SkipJsonSchema[None] = Field(None, description="Ends an Anthropic thinking block (text empty).")
    redacted: str | SkipJsonSchema[None] = Field(None, description="A redacted Anthropic thinking block, whole.")


class TokenLogprobJson(_Out):
    token: str
    logprob: float
    bytes: list[int] | None
    top: list[TokenLogprobJson]


class LogprobsEvent(_Event):
    type: Literal["logprobs"]
    tokens: list[TokenLogprobJson]


class FallbackEvent(_Event):
    type: Literal["fallback"]
    from_model: str
    to_model: str
    reason: str
    chars_so_far: int
    mode: Literal["continue", "restart"]


class SeamEvent(_Event):
    type: Literal["seam"]
    keep_chars: int
    discard_chars: int
    reason: str


class UsageEvent(_Event, EventSegmentJson):
    type: Literal["usage"]


class DoneUsage(_Out):
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_input_tokens: int
    estimated: bool


class DoneEvent(_Event):
    type: Literal["done"]
    finish_reason: str | None
    usage: DoneUsage
    cost_usd: Money
    segments: list[EventSegmentJson]
    skipped: list[SkippedJson]
    stop_sequence: str | SkipJsonSchema[None] = Field(
        None, description="The stop sequence that ended the answer, where the provider says which (Claude)."
    )


class SkippedJson(_Out):
    """A model of the chain passed over without a request."""

    model: str
    provider: str
    reason: str


class Tried(_Out):
    model: str
    provider: str | None
    reason: str
    segment: int | None = Field(description="The attempt's number; null for a model skipped without a request.")
    provider_code: str | None
    provider_message: str | None


class ErrorEvent(_Out):
    """The last event of a failed stream; or, with `stream_id: null` and no `seq`, the end of a follow that cannot
    go on (the stream itself may still run)."""

    type: Literal["error"]
    stream_id: str | None
    id: str | None
    seq: int | SkipJsonSchema[None] = Field(None, ge=1)
    code: str
    message: str
    retryable: bool
    attempts: list[Tried] | SkipJsonSchema[None] = None
    retry_after_s: float | SkipJsonSchema[None] = None
    frame: str | None = Field(None, description="On a WebSocket only: the type of the frame this refuses.")


class DrainingEvent(_Event):
    type: Literal["server.draining"]
    reconnect_after_ms: int
    message: str


EVENT_DATA: dict[str, type[BaseModel]] = {
    "stream.started": StartedEvent,
    "delta": DeltaEvent,
    "tool_call.delta": ToolCallDeltaEvent,
    "reasoning.delta": ReasoningEvent,
    "logprobs": LogprobsEvent,
    "fallback": FallbackEvent,
    "seam": SeamEvent,
    "usage": UsageEvent,
    "done": DoneEvent,
    "error": ErrorEvent,
    "server.draining": DrainingEvent,
}
EVENT_FRAMES = tuple(SSE(name, model) for name, model in EVENT_DATA.items())


# -- live spend (`gateway.bus.base`) -------------------------------------------------------------------------------


class SpendTick(_Out):
    type: Literal["spend.tick"]
    user_id: str
    stream_id: str
    model: str
    cost_usd: Money
    output_tokens: int
    estimated: Literal[True]
    at: Timestamp


class SpendStream(StreamRowJson):
    type: Literal["spend.stream"]


SPEND_FRAMES = (SSE("spend.tick", SpendTick), SSE("spend.stream", SpendStream))
