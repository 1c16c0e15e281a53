"""The router's events, and the state of one request across its attempts: what the client holds, which models
were tried or skipped and why, and the switch to the next model announced before its first token."""

from __future__ import annotations

from dataclasses import dataclass, field

from providers import errors
from providers.base import ChatRequest, Credential
from providers.catalog import ModelSpec
from providers.events import FinishReason, ProviderEvent
from providers.failover import Decision, FallbackMode, Policy
from providers.seam import SeamReset
from providers.segments import Attempt, KeyResolver, Segment


@dataclass(slots=True)
class AttemptStarted:
    model: ModelSpec
    segment: int
    retry: int = 0


@dataclass(slots=True)
class FallbackStarted:
    from_model: str
    to_model: str
    reason: str
    chars_so_far: int
    mode: FallbackMode


@dataclass(slots=True)
class ModelSkipped:
    """A model of the chain the router did not ask (`reason`: `circuit_open`, `no_key`, …). `announced`: a
    `FallbackStarted` from it follows, as for a model that failed."""

    model: ModelSpec
    reason: str
    announced: bool


@dataclass(slots=True)
class SegmentEnded:
    segment: Segment


@dataclass(slots=True)
class RouterDone:
    finish_reason: FinishReason
    segments: list[Segment]
    stop_sequence: str | None = None  # the stop sequence that ended the answer, where the provider says


RouterEvent = ProviderEvent | AttemptStarted | FallbackStarted | ModelSkipped | SeamReset | SegmentEnded | RouterDone


class AllModelsFailed(Exception):
    """The stream ends without an answer. `code`: `all_models_failed`, `midstream_failed`, `bad_request`,
    `context_length_exceeded` or `content_filtered`."""

    def __init__(
        self,
        attempts: list[Attempt],
        segments: list[Segment],
        final: errors.ProviderError | None,
        *,
        code: str = "all_models_failed",
        retryable: bool = True,
    ) -> None:
        super().__init__(", ".join(_describe(a) for a in attempts) or "no model could be tried")
        self.attempts = attempts
        self.segments = segments
        self.final = final
        self.code = code
        self.retryable = retryable


def _describe(a: Attempt) -> str:
    said = f" ({a.provider_code}: {a.provider_message})" if a.provider_code is not None else ""
    return f"{a.model}: {a.reason}{said}"


@dataclass(slots=True)
class _Pending:
    """A switch to another model, announced to the client before the new model's first token."""

    from_model: str
    reason: str
    chars: int
    mode: FallbackMode
    failed_at: float


@dataclass(slots=True)
class Run:
    request: ChatRequest
    chain: list[ModelSpec]
    policy: Policy
    deadline: float
    text: list[str] = field(default_factory=list)  # the answer text the client holds
    tool_open: bool = False  # a tool call reached the client but its stream never finished
    dead: set[str] = field(default_factory=set)  # providers whose key was refused
    creds: dict[str, Credential | None] = field(default_factory=dict)
    segments: list[Segment] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    pending: _Pending | None = None
    last_error: errors.ProviderError | None = None
    # After a context-length failure: the next model needs a window larger than this (None: any model).
    window_floor: int | None = None

    @property
    def has_output(self) -> bool:
        return bool(self.text) or self.tool_open

    @property
    def aligned_restart(self) -> bool:
        """A structured (JSON) answer cannot be continued: constrained decoding starts again at the document's
        root. The next model answers the original request instead, and the seam aligns its answer with the text
        the client holds (the repeat is cut; a document that goes another way comes with a `seam`)."""
        rf = self.request.response_format
        return rf is not None and rf.is_json

    async def credential(self, provider: str, keys: KeyResolver) -> Credential | None:
        if provider not in self.creds:
            self.creds[provider] = await keys.credential(provider)
        return self.creds[provider]

    def fits(self, spec: ModelSpec) -> bool:
        floor = self.window_floor
        return floor is None or spec.context_window is None or spec.context_window > floor

    def larger_window_after(self, index: int) -> bool:
        """Whether a later model of the chain has a larger context window than model `index` (unknown: larger)."""
        window = self.chain[index].context_window
        if window is None:
            return index + 1 < len(self.chain)
        return any(m.context_window is None or m.context_window > window for m in self.chain[index + 1 :])

    def cut(self, reset: SeamReset) -> None:
        """The seam told the client to drop the end of the answer: drop it here too."""
        held = "".join(self.text)[: reset.keep_chars]
        self.text[:] = [held] if held else []

    # -- events -------------------------------------------------------------------------------------------------
    def announce(self, spec: ModelSpec, seg: Segment) -> list[AttemptStarted | FallbackStarted]:
        """The events that open an attempt: the pending switch to this model, then the attempt itself."""
        out: list[AttemptStarted | FallbackStarted] = []
        pending, self.pending = self.pending, None
        if pending is not None:
            seg.failover_from = pending.failed_at
            out.append(FallbackStarted(pending.from_model, spec.id, pending.reason, pending.chars, pending.mode))
        out.append(AttemptStarted(spec, seg.number, seg.retry))
        return out

    def skip(self, spec: ModelSpec, reason: str, now: float) -> list[ModelSkipped | FallbackStarted]:
        """A model passed over without a request. An open circuit is announced like a failure: the client sees the
        move to the model after it; other skips (no key, a refused key, a window too small) are only listed."""
        self.attempts.append(Attempt(spec.id, spec.provider, reason))
        announced = reason == "circuit_open"
        out: list[ModelSkipped | FallbackStarted] = [ModelSkipped(spec, reason, announced)]
        if not announced:
            return out
        pending = self.pending
        if pending is not None:
            out.append(FallbackStarted(pending.from_model, spec.id, pending.reason, pending.chars, pending.mode))
        chars = sum(len(t) for t in self.text)
        self.pending = _Pending(spec.id, reason, chars, "continue", pending.failed_at if pending else now)
        return out

    def failed_attempt(self, seg: Segment, failure: errors.ProviderError, secret: str) -> None:
        code, message = errors.upstream_detail(failure, secret)
        seg.reason, seg.provider_code, seg.provider_message = failure.code, code, message
        self.last_error = failure
        self.attempts.append(Attempt(seg.model, seg.provider, failure.code, seg.number, code, message))

    def leave(self, spec: ModelSpec, failure: errors.ProviderError, decision: Decision, failed_at: float) -> None:
        """Move past `spec`: the next model continues the answer the client holds, or starts it again."""
        chars = sum(len(t) for t in self.text)
        if decision.drop_provider:
            self.dead.add(spec.provider)
        if decision.larger_window and spec.context_window is not None:
            self.window_floor = max(self.window_floor or 0, spec.context_window)
        if decision.mode == "restart":
            self.text.clear()
            self.tool_open = False
        self.pending = _Pending(spec.id, failure.code, chars, decision.mode, failed_at)

    # -- endings ------------------------------------------------------------------------------------------------
    def failed(self, code: str, *, retryable: bool) -> AllModelsFailed:
        return AllModelsFailed(self.attempts, self.segments, self.last_error, code=code, retryable=retryable)

    def exhausted(self) -> AllModelsFailed:
        """The chain ran out. A prompt too long for every model tried says so rather than `all_models_failed`, and
        so does a chain whose every model asked was rate limited (`all_models_rate_limited`: retry later)."""
        if isinstance(self.last_error, errors.ContextLengthExceeded):
            return self.failed(self.last_error.code, retryable=False)
        asked = [a for a in self.attempts if a.segment is not None]
        if asked and all(a.reason == errors.RateLimited.code for a in asked):
            return self.failed("all_models_rate_limited", retryable=True)
        return self.failed("all_models_failed", retryable=True)
