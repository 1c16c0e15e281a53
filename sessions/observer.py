"""What a stream tells an observer (tracing, in `gateway.telemetry`): that it started, each attempt on a model,
each fallback, each attempt's end, and its own end.

Only at those boundaries, never per token, and from what the stream already holds (the router's events, its
record). Without an observer the stream calls nothing at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from providers.base import ChatRequest
from providers.catalog import ModelSpec
from providers.router import AttemptStarted, FallbackStarted, MidstreamPolicy
from providers.segments import Segment
from sessions.records import StreamRecord


@dataclass(slots=True, frozen=True)
class StreamStart:
    stream_id: str
    user_id: str
    chain: tuple[ModelSpec, ...]  # the models it may use, the requested one first
    request: ChatRequest
    policy: MidstreamPolicy


class StreamWatch(Protocol):
    """One stream, as its observer follows it."""

    def attempt(self, started: AttemptStarted) -> None: ...

    def fallback(self, fallback: FallbackStarted) -> None: ...

    def segment(self, segment: Segment) -> None:
        """The attempt begun last has ended (ok, failed or cancelled), with its usage and cost."""
        ...

    def ended(self, record: StreamRecord) -> None: ...


class StreamObserver(Protocol):
    def stream(self, start: StreamStart) -> StreamWatch:
        """A stream is starting: the watch its events go to."""
        ...
