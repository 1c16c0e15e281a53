"""What the SDK faces gather from one stream's events: the answer as the client should hold it (restarts and
seams applied), its tool calls, the fallbacks and segments, the end, and the `gateway` extra field they share.

Each face builds its own reply from this (a `chat.completion`, a `response`); only the event handling and the
extra field are common.
"""

from __future__ import annotations

from typing import Any

from providers.segments import Segment
from sessions.errors import GatewayError, fail, kind_of
from sessions.events import (
    Delta,
    Done,
    Draining,
    Error,
    Event,
    Fallback,
    Seam,
    SegmentUsage,
    Started,
    ToolCallDelta,
)
from sessions.segment_json import event_segment_json, money


class Call:
    """One function call being gathered from its pieces."""

    __slots__ = ("arguments", "id", "name")

    def __init__(self) -> None:
        self.id: str | None = None
        self.name: str | None = None
        self.arguments: list[str] = []

    def take(self, ev: ToolCallDelta) -> None:
        self.id = ev.call_id if ev.call_id is not None else self.id
        self.name = ev.name if ev.name is not None else self.name
        self.arguments.append(ev.arguments)


class Gathered:
    """One stream's answer, kept up to date from its events."""

    def __init__(self, stream_id: str, model: str) -> None:
        self.stream_id = stream_id
        self.model = model  # the model answering at this moment
        self.text: list[str] = []
        self.tool_calls: dict[int, Call] = {}
        self.fallbacks: list[dict[str, Any]] = []
        self.segments: list[Segment] = []
        self.done: Done | None = None
        self.error: GatewayError | None = None

    def take(self, ev: Event) -> None:
        if isinstance(ev, Delta):
            self.text.append(ev.text)
        elif isinstance(ev, Started):
            self.model = ev.model
        elif isinstance(ev, ToolCallDelta):
            self.tool_calls.setdefault(ev.index, Call()).take(ev)
        elif isinstance(ev, Fallback):
            self.fallbacks.append(ev.wire())
            self.model = ev.to_model
            if ev.mode == "restart":  # the partial answer and tool calls are void: the next model starts over
                self.text.clear()
                self.tool_calls.clear()
        elif isinstance(ev, Seam):
            kept = "".join(self.text)[: ev.keep_chars]
            self.text[:] = [kept]
        elif isinstance(ev, SegmentUsage):
            self.segments.append(ev.segment)
        elif isinstance(ev, Done):
            self.done = ev
        elif isinstance(ev, Error):
            kind = kind_of(ev.code)
            self.error = GatewayError(kind, ev.code, ev.message, retryable=ev.retryable, retry_after_s=ev.retry_after_s)
        elif isinstance(ev, Draining):
            self.error = fail("draining", ev.message)

    def usage_totals(self) -> tuple[int, int, int, int]:
        """Input, output, cached input and reasoning tokens over every segment."""
        segs = self.done.segments if self.done is not None else self.segments
        return (
            sum(s.usage.input_tokens for s in segs),
            sum(s.usage.output_tokens for s in segs),
            sum(s.usage.cached_input_tokens for s in segs),
            sum(s.usage.reasoning_tokens for s in segs),
        )

    def gateway(self) -> dict[str, Any]:
        """The extra field: fallbacks, segments and cost (what the SDKs' own objects have no place for)."""
        done = self.done
        segs = done.segments if done is not None else self.segments
        return {
            "stream_id": self.stream_id,
            "cost_usd": money(done.cost_usd) if done is not None else None,
            "estimated": bool(done is not None and any(s.estimated for s in done.segments)),
            "fallbacks": self.fallbacks,
            "segments": [event_segment_json(s) for s in segs],
        }
