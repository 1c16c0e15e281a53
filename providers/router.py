"""The fallback router: streams a chat over a chain of models and survives failures.

It yields provider events plus its own (`AttemptStarted`, `FallbackStarted`, `SegmentEnded`) and
finishes with `RouterDone`, or raises `AllModelsFailed` naming each attempt's reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal, Protocol

from providers import errors
from providers.base import ChatRequest, Credential, Message, Provider
from providers.catalog import ModelSpec
from providers.events import Finish, FinishReason, ProviderEvent, TextDelta, ToolCallDelta, Usage
from providers.pricing import cost_usd, estimate_tokens

log = logging.getLogger("gateway.router")

MidstreamPolicy = Literal["continue", "restart", "error"]

CONTINUE_INSTRUCTION = (
    "Your previous reply was cut off. Continue it exactly where it stops, without repeating "
    "any of it and without any preamble."
)


class KeyResolver(Protocol):
    async def credential(self, provider: str) -> Credential | None: ...


@dataclass(slots=True)
class Segment:
    """One attempt on one model: what it produced and what it cost."""

    number: int
    model: str
    provider: str
    status: Literal["ok", "failed", "cancelled"] = "ok"
    reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    estimated: bool = False
    cost_usd: Decimal = Decimal(0)
    chars: int = 0
    ttft_ms: float | None = None
    duration_ms: float = 0.0


@dataclass(slots=True)
class AttemptStarted:
    model: ModelSpec
    segment: int


@dataclass(slots=True)
class FallbackStarted:
    from_model: str
    to_model: str
    reason: str
    chars_so_far: int
    mode: Literal["continue", "restart"]


@dataclass(slots=True)
class SegmentEnded:
    segment: Segment


@dataclass(slots=True)
class RouterDone:
    finish_reason: FinishReason
    segments: list[Segment]


RouterEvent = ProviderEvent | AttemptStarted | FallbackStarted | SegmentEnded | RouterDone


class AllModelsFailed(Exception):
    def __init__(self, segments: Sequence[Segment], final: errors.ProviderError | None) -> None:
        reasons = ", ".join(f"{s.model}: {s.reason}" for s in segments) or "no model could be tried"
        super().__init__(reasons)
        self.segments = list(segments)
        self.final = final

    @property
    def code(self) -> str:
        if self.final is not None and not self.final.fallback_ok:
            return self.final.code
        return "all_models_failed"


def continuation_request(original: ChatRequest, partial: str, target: ModelSpec) -> ChatRequest:
    """The original messages plus the partial answer, in the form the target model accepts."""
    if target.supports_prefill:
        # Providers reject a prefill ending in whitespace; the trimmed tail comes back in the continuation.
        msgs = (*original.messages, Message("assistant", partial.rstrip()))
    else:
        msgs = (*original.messages, Message("assistant", partial), Message("user", CONTINUE_INSTRUCTION))
    return ChatRequest(msgs, original.max_tokens, original.temperature, original.stop, original.tools)


@dataclass(slots=True)
class Router:
    providers: Mapping[str, Provider]
    clock: Callable[[], float] = time.monotonic

    async def stream(
        self,
        request: ChatRequest,
        chain: Sequence[ModelSpec],
        keys: KeyResolver,
        policy: MidstreamPolicy = "continue",
    ) -> AsyncIterator[RouterEvent]:
        segments: list[Segment] = []
        text_so_far: list[str] = []
        last_error: errors.ProviderError | None = None
        current = request
        for spec in chain:
            provider = self.providers.get(spec.provider)
            cred = await keys.credential(spec.provider)
            if provider is None or cred is None:
                continue  # the session filters chains by key; a key deleted meanwhile just skips
            seg = Segment(len(segments) + 1, spec.id, spec.provider)
            segments.append(seg)
            if len(segments) > 1:
                prev = segments[-2]
                partial = "".join(text_so_far)
                yield FallbackStarted(prev.model, spec.id, prev.reason or "error", len(partial), "continue")
                current = continuation_request(request, partial, spec) if partial else request
            yield AttemptStarted(spec, seg.number)
            started = self.clock()
            finish: FinishReason | None = None
            seg_text: list[str] = []
            got_usage = False
            try:
                async for ev in provider.stream(current, spec.upstream, cred):
                    if isinstance(ev, TextDelta):
                        if seg.ttft_ms is None:
                            seg.ttft_ms = (self.clock() - started) * 1000
                        seg_text.append(ev.text)
                        text_so_far.append(ev.text)
                        yield ev
                    elif isinstance(ev, ToolCallDelta):
                        if seg.ttft_ms is None:
                            seg.ttft_ms = (self.clock() - started) * 1000
                        yield ev
                    elif isinstance(ev, Usage):
                        seg.usage, got_usage = ev, True
                    elif isinstance(ev, Finish):
                        finish = ev.reason
                if finish is None:
                    raise errors.Truncated(
                        "stream ended without a finish reason", provider=spec.provider, model=spec.id
                    )
            except errors.ProviderError as exc:
                last_error = exc
                seg.status, seg.reason = "failed", exc.code
            except BaseException:
                seg.status, seg.reason = "cancelled", "cancelled"
                _settle(seg, spec, seg_text, got_usage, current, self.clock() - started)
                yield SegmentEnded(seg)
                raise
            _settle(seg, spec, seg_text, got_usage, current, self.clock() - started)
            yield SegmentEnded(seg)
            if seg.status == "ok" and finish is not None:
                yield RouterDone(finish, segments)
                return
            if last_error is not None and not last_error.fallback_ok:
                break
        raise AllModelsFailed(segments, last_error)


def _settle(seg: Segment, spec: ModelSpec, text: list[str], got_usage: bool, req: ChatRequest, elapsed: float) -> None:
    joined = "".join(text)
    seg.chars = len(joined)
    seg.duration_ms = elapsed * 1000
    if not got_usage:
        seg.estimated = True
        seg.usage = Usage(
            input_tokens=estimate_tokens("".join(m.text() for m in req.messages)),
            output_tokens=estimate_tokens(joined),
        )
    seg.cost_usd = cost_usd(spec, seg.usage)
