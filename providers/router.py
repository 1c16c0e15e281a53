"""The fallback router: streams a chat over a chain of models and survives failures.

It yields provider events plus its own (`AttemptStarted`, `FallbackStarted`, `SegmentEnded`) and
finishes with `RouterDone`, or raises `AllModelsFailed` naming each attempt's reason.

Rules (docs/protocol.md, "Fallback", says the same for clients):
- An attempt that failed before producing anything is retried on the same model when the error is
  retryable, with jittered backoff honouring retry-after, while the request deadline allows; then the
  chain moves on. Auth failures skip every model of that provider for this request. A bad request
  before any output is the caller's fault: reported at once, not tried on every model.
- An attempt that failed after producing output moves to the next model, which continues the answer
  (assistant prefill or an instruction turn, whichever it accepts); a repeated tail is trimmed at the
  seam. A half-streamed tool call, or the `restart` policy, restarts the answer instead (mode
  `restart`); the `error` policy ends the stream.
- Every attempt, retries included, is a `Segment` with its own usage and cost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from providers import errors
from providers.backoff import Backoff
from providers.base import ChatRequest, Credential, Provider
from providers.breaker import Breaker, NoBreaker
from providers.catalog import ModelSpec
from providers.events import Finish, FinishReason, ProviderEvent, TextDelta, ToolCallDelta, Usage
from providers.pricing import cost_usd, estimate_tokens
from providers.seam import CONTINUE_INSTRUCTION, SeamTrimmer, continuation_request
from providers.segments import Attempt, KeyResolver, RequestForm, Segment
from providers.watchdog import Watchdog, monotonic

log = logging.getLogger("gateway.router")

MidstreamPolicy = Literal["continue", "restart", "error"]
FallbackMode = Literal["continue", "restart"]

__all__ = [
    "CONTINUE_INSTRUCTION",
    "AllModelsFailed",
    "Attempt",
    "AttemptStarted",
    "FallbackStarted",
    "KeyResolver",
    "MidstreamPolicy",
    "Router",
    "RouterDone",
    "RouterEvent",
    "Segment",
    "SegmentEnded",
    "continuation_request",
]


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
class SegmentEnded:
    segment: Segment


@dataclass(slots=True)
class RouterDone:
    finish_reason: FinishReason
    segments: list[Segment]


RouterEvent = ProviderEvent | AttemptStarted | FallbackStarted | SegmentEnded | RouterDone


class AllModelsFailed(Exception):
    """The stream ends without an answer. `code`: `all_models_failed`, `bad_request` or `midstream_failed`."""

    def __init__(
        self,
        attempts: Sequence[Attempt],
        segments: Sequence[Segment],
        final: errors.ProviderError | None,
        *,
        code: str = "all_models_failed",
        retryable: bool = True,
    ) -> None:
        reasons = ", ".join(f"{a.model}: {a.reason}" for a in attempts) or "no model could be tried"
        super().__init__(reasons)
        self.attempts = list(attempts)
        self.segments = list(segments)
        self.final = final
        self.code = code
        self.retryable = retryable


@dataclass(slots=True)
class _Pending:
    """A switch to another model, announced to the client before the new model's first token."""

    from_model: str
    reason: str
    chars: int
    mode: FallbackMode
    failed_at: float


@dataclass(slots=True)
class _Run:
    """The state of one request across its attempts."""

    request: ChatRequest
    policy: MidstreamPolicy
    deadline: float
    text: list[str] = field(default_factory=list)  # what the client holds (continue mode)
    tool_open: bool = False  # a tool call reached the client but its stream never finished
    dead: set[str] = field(default_factory=set)  # providers whose key was refused
    creds: dict[str, Credential | None] = field(default_factory=dict)
    segments: list[Segment] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    pending: _Pending | None = None
    last_error: errors.ProviderError | None = None

    @property
    def has_output(self) -> bool:
        return bool(self.text) or self.tool_open

    def skip(self, spec: ModelSpec, reason: str) -> None:
        self.attempts.append(Attempt(spec.id, spec.provider, reason))


def _counts_against_model(failure: errors.ProviderError, cred: Credential) -> bool:
    """Whether a failure says something about the model's health for everyone (the breaker's input)."""
    if isinstance(failure, errors.RateLimited):
        # Users bring their own keys: one user's rate limit says nothing about the next user's.
        return cred.source == "operator"
    return failure.retryable


async def _close(it: AsyncIterator[ProviderEvent]) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        await aclose()


class Router:
    """Holds what outlives a request: providers, the shared circuit breaker, timeouts, learned quirks."""

    def __init__(
        self,
        providers: Mapping[str, Provider],
        *,
        breaker: Breaker | None = None,
        backoff: Backoff | None = None,
        first_token_timeout_s: float = 30.0,
        inter_token_timeout_s: float = 30.0,
        request_deadline_s: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_failover: Callable[[Segment], None] | None = None,
    ) -> None:
        self.providers = providers
        self.breaker: Breaker = breaker if breaker is not None else NoBreaker()
        self.backoff = backoff if backoff is not None else Backoff()
        self.first_token_timeout_s = first_token_timeout_s
        self.inter_token_timeout_s = inter_token_timeout_s
        self.request_deadline_s = request_deadline_s
        self.clock = clock
        self.sleep = sleep
        self.on_failover = on_failover
        # Models that answered an assistant prefill with a refusal: continued in instruction form from then on.
        self.no_prefill: set[str] = set()

    def _form_for(self, spec: ModelSpec, run: _Run) -> RequestForm:
        if not run.text:
            return "original"
        return "prefill" if spec.supports_prefill and spec.id not in self.no_prefill else "instruction"

    async def _credential(self, provider: str, run: _Run, keys: KeyResolver) -> Credential | None:
        if provider not in run.creds:
            run.creds[provider] = await keys.credential(provider)
        return run.creds[provider]

    async def stream(
        self,
        request: ChatRequest,
        chain: Sequence[ModelSpec],
        keys: KeyResolver,
        policy: MidstreamPolicy = "continue",
    ) -> AsyncGenerator[RouterEvent, None]:
        clock = self.clock
        run = _Run(request, policy, clock() + self.request_deadline_s)
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - an async generator always runs inside a task
            raise RuntimeError("Router.stream must run inside a task")
        stamp, keep = monotonic, run.text.append  # locals for the per-token path (run.text is never rebound)

        for index, spec in enumerate(chain):
            if run.segments and not run.has_output and clock() >= run.deadline:
                run.attempts.extend(Attempt(s.id, s.provider, "deadline_exceeded") for s in chain[index:])
                break
            provider = self.providers.get(spec.provider)
            if spec.provider in run.dead:
                run.skip(spec, "auth_failed")
                continue
            if provider is None:
                run.skip(spec, "unavailable")
                continue
            cred = await self._credential(spec.provider, run, keys)
            if cred is None:  # the session filters chains by key; a key deleted meanwhile just skips
                run.skip(spec, "no_key")
                continue
            form = self._form_for(spec, run)
            retry = 0
            while True:  # attempts on this model: retries, or the instruction form after a refused prefill
                if not await self.breaker.acquire(spec.provider, spec.upstream):
                    run.skip(spec, "circuit_open")
                    break
                seg = Segment(len(run.segments) + 1, spec.id, spec.provider, retry=retry, form=form)
                run.segments.append(seg)
                pending = run.pending
                try:
                    if pending is not None:
                        run.pending = None
                        seg.failover_from = pending.failed_at
                        yield FallbackStarted(pending.from_model, spec.id, pending.reason, pending.chars, pending.mode)
                    yield AttemptStarted(spec, seg.number, retry)
                except BaseException:
                    # Closed by the consumer between acquiring and using the circuit: a held half-open
                    # probe would otherwise keep every other stream off this model.
                    await self.breaker.release(spec.provider, spec.upstream)
                    raise

                partial = "".join(run.text) if form != "original" else ""
                req = request if form == "original" else continuation_request(request, partial, form)
                trim = SeamTrimmer(partial) if partial else None
                seg_start = len(run.text)
                tool_chars = 0
                produced = False
                got_usage = False
                finish: FinishReason | None = None
                failure: errors.ProviderError | None = None
                inter_to = spec.inter_token_timeout or self.inter_token_timeout_s
                it = provider.stream(req, spec.upstream, cred)
                anext_ = it.__anext__
                started = seg.sent_at = clock()
                if seg.failover_from is not None and self.on_failover is not None:
                    self.on_failover(seg)
                wd = Watchdog(loop, task, spec.first_token_timeout or self.first_token_timeout_s)
                try:
                    try:
                        # The per-token path: two float stores for the watchdog, one isinstance chain.
                        while True:
                            wd.since = stamp()
                            try:
                                ev = await anext_()
                            except StopAsyncIteration:
                                break
                            wd.since = 0.0
                            if isinstance(ev, TextDelta):
                                if not produced:
                                    produced = True
                                    seg.ttft_ms = (clock() - started) * 1000
                                    wd.retime(inter_to)
                                if trim is not None:
                                    out = trim.feed(ev.text)
                                    if trim.done:
                                        trim = None
                                    if not out:
                                        continue
                                    if out != ev.text:
                                        ev = TextDelta(out)
                                keep(ev.text)
                                yield ev
                            elif isinstance(ev, ToolCallDelta):
                                if not produced:
                                    produced = True
                                    seg.ttft_ms = (clock() - started) * 1000
                                    wd.retime(inter_to)
                                if trim is not None:
                                    out, trim = trim.flush(), None
                                    if out:
                                        run.text.append(out)
                                        yield TextDelta(out)
                                tool_chars += len(ev.arguments)
                                run.tool_open = True
                                yield ev
                            elif isinstance(ev, Usage):
                                seg.usage, got_usage = ev, True
                            elif isinstance(ev, Finish):
                                finish = ev.reason
                        wd.since = 0.0
                        if finish is None:
                            raise errors.Truncated(
                                "stream ended without a finish reason", provider=spec.provider, model=spec.id
                            )
                        if trim is not None:
                            out, trim = trim.flush(), None
                            if out:
                                run.text.append(out)
                                yield TextDelta(out)
                    except asyncio.CancelledError:
                        if not wd.absorb():
                            raise
                        failure = errors.Stalled("no token within the timeout", provider=spec.provider, model=spec.id)
                    except errors.ProviderError as exc:
                        failure = exc
                    except Exception as exc:  # an adapter bug fails this attempt, not the whole stream
                        log.error(
                            "provider raised an unexpected exception",
                            extra={"provider": spec.provider, "model": spec.id},
                            exc_info=exc,
                        )
                        failure = errors.ProviderError(
                            f"unexpected {type(exc).__name__}", provider=spec.provider, model=spec.id
                        )
                    finally:
                        wd.stop()
                    if wd.fired:
                        # The adapter turned our cancellation into an error of its own: still a stall,
                        # unless someone else cancelled the task too.
                        if not wd.absorb():
                            raise asyncio.CancelledError
                        failure = errors.Stalled("no token within the timeout", provider=spec.provider, model=spec.id)
                except asyncio.CancelledError:
                    # Client stop, shutdown: bill what was produced, tell the consumer, let it propagate.
                    await self._abandon(seg, spec, run, seg_start, tool_chars, got_usage, req, started, it)
                    yield SegmentEnded(seg)
                    raise
                except BaseException:
                    # The consumer closed this generator: it can take no more events, but the bill stands.
                    await self._abandon(seg, spec, run, seg_start, tool_chars, got_usage, req, started, it)
                    raise
                await _close(it)

                if failure is None:
                    assert finish is not None
                    self._settle(seg, spec, run, seg_start, tool_chars, got_usage, req, clock() - started)
                    await self.breaker.success(spec.provider, spec.upstream)
                    yield SegmentEnded(seg)
                    yield RouterDone(finish, run.segments)
                    return

                failed_at = seg.failed_at = clock()
                seg.status, seg.reason = "failed", failure.code
                run.last_error = failure
                run.attempts.append(Attempt(spec.id, spec.provider, failure.code, seg.number))
                self._settle(seg, spec, run, seg_start, tool_chars, got_usage, req, failed_at - started)
                if _counts_against_model(failure, cred):
                    await self.breaker.failure(spec.provider, spec.upstream)
                else:
                    await self.breaker.release(spec.provider, spec.upstream)
                log.info(
                    "attempt failed",
                    extra={"provider": spec.provider, "model": spec.id, "reason": failure.code, "segment": seg.number},
                )
                yield SegmentEnded(seg)

                if run.has_output and policy == "error":
                    raise AllModelsFailed(run.attempts, run.segments, failure, code="midstream_failed")
                if isinstance(failure, (errors.AuthFailed, errors.NoCredential)):
                    run.dead.add(spec.provider)
                elif (
                    form == "prefill"
                    and not produced
                    and isinstance(failure, (errors.PrefillRejected, errors.BadRequest))
                ):
                    # Some models refuse an assistant prefill with a plain 400: ask again in instruction form.
                    self.no_prefill.add(spec.id)
                    form = "instruction"
                    retry += 1
                    continue
                elif isinstance(failure, errors.BadRequest) and not run.has_output:
                    raise AllModelsFailed(run.attempts, run.segments, failure, code=failure.code, retryable=False)
                elif not produced and failure.retryable:
                    wait = self.backoff.delay(retry, getattr(failure, "retry_after", None))
                    if wait is not None and clock() + wait < run.deadline:
                        await self.sleep(wait)
                        retry += 1
                        continue
                run.pending = self._switch(run, spec, failure, failed_at)
                break
        raise AllModelsFailed(run.attempts, run.segments, run.last_error)

    def _switch(self, run: _Run, spec: ModelSpec, failure: errors.ProviderError, failed_at: float) -> _Pending:
        """Leave `spec` for the next model: continue the answer the client holds, or start it again."""
        chars = sum(len(t) for t in run.text)
        mode: FallbackMode = "continue"
        if run.tool_open or (run.policy == "restart" and run.text):
            # A half-streamed tool call cannot be continued as prose; `restart` asks for a clean answer.
            mode = "restart"
            run.text.clear()
            run.tool_open = False
        return _Pending(spec.id, failure.code, chars, mode, failed_at)

    async def _abandon(
        self,
        seg: Segment,
        spec: ModelSpec,
        run: _Run,
        seg_start: int,
        tool_chars: int,
        got_usage: bool,
        req: ChatRequest,
        started: float,
        it: AsyncIterator[ProviderEvent],
    ) -> None:
        seg.status, seg.reason = "cancelled", "cancelled"
        self._settle(seg, spec, run, seg_start, tool_chars, got_usage, req, self.clock() - started)
        await self.breaker.release(spec.provider, spec.upstream)
        await _close(it)

    def _settle(
        self,
        seg: Segment,
        spec: ModelSpec,
        run: _Run,
        seg_start: int,
        tool_chars: int,
        got_usage: bool,
        req: ChatRequest,
        elapsed: float,
    ) -> None:
        """Usage and cost of a finished attempt; estimated from the text where the provider never said."""
        chars = sum(len(t) for t in run.text[seg_start:])
        seg.chars = chars
        seg.duration_ms = elapsed * 1000
        u = seg.usage
        out_est = estimate_tokens("x" * (chars + tool_chars)) if chars + tool_chars else 0
        if seg.status == "ok" and not got_usage:
            u = Usage(estimate_tokens("".join(m.text() for m in req.messages)), out_est)
            seg.estimated = True
        elif seg.status != "ok" and out_est > u.output_tokens:
            # Output reached the client but its usage never came: bill an estimate rather than nothing.
            inp = u.input_tokens or estimate_tokens("".join(m.text() for m in req.messages))
            u = Usage(inp, out_est, u.cached_input_tokens, u.reasoning_tokens)
            seg.estimated = True
        seg.usage = u
        seg.cost_usd = cost_usd(spec, u)
