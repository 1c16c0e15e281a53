"""The fallback router: streams a chat over a chain of models and survives failures.

It yields provider events plus its own (`AttemptStarted`, `FallbackStarted`, `ModelSkipped`, `SeamReset`,
`SegmentEnded`) and finishes with `RouterDone`, or raises `AllModelsFailed` naming each attempt's reason.

The loop below walks the chain; what happens after a failure is `failover.decide` (the table in that module);
one attempt (the upstream call, its watchdog, the seam, the usage) is an `UpstreamAttempt`; the request's state
across attempts is a `Run` (`providers/run.py`). docs/protocol.md ("Fallback") says the same for clients.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence

from providers.attempt import UpstreamAttempt
from providers.backoff import Backoff
from providers.base import ChatRequest, Provider
from providers.breaker import Breaker, NoBreaker
from providers.capabilities import accepts_prefill, can_take_over, for_model
from providers.catalog import ModelSpec
from providers.continuation import continuation_request
from providers.failover import Decision, MidstreamPolicy, Policy, RefusalPolicy, Situation, breaker_verdict, decide
from providers.run import (
    AllModelsFailed,
    AttemptStarted,
    FallbackStarted,
    ModelSkipped,
    RouterDone,
    RouterEvent,
    Run,
    SegmentEnded,
)
from providers.seam import SeamReset
from providers.segments import Attempt, KeyResolver, RequestForm, Segment

log = logging.getLogger("gateway.router")

__all__ = [
    "AllModelsFailed",
    "Attempt",
    "AttemptStarted",
    "FallbackStarted",
    "KeyResolver",
    "MidstreamPolicy",
    "ModelSkipped",
    "RefusalPolicy",
    "Router",
    "RouterDone",
    "RouterEvent",
    "SeamReset",
    "Segment",
    "SegmentEnded",
]


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

    async def stream(
        self,
        request: ChatRequest,
        chain: Sequence[ModelSpec],
        keys: KeyResolver,
        policy: MidstreamPolicy = "continue",
        *,
        on_refusal: RefusalPolicy = "error",
    ) -> AsyncGenerator[RouterEvent, None]:
        run = Run(request, list(chain), Policy(policy, on_refusal), self.clock() + self.request_deadline_s)
        for index, spec in enumerate(chain):
            skip = await self._admit(run, spec, keys)
            form: RequestForm | None = self._form_for(spec, run)
            retry = 0
            while skip is None and form is not None:  # attempts on this model: retries, the instruction form
                att = self._attempt(run, spec, form, retry)
                relay = att.relay()
                try:
                    for event in run.announce(spec, att.seg):
                        yield event
                    if att.seg.failover_from is not None and self.on_failover is not None:
                        self.on_failover(att.seg)
                    async for out in relay:
                        yield out
                    run.tool_open |= att.tool_seen
                except BaseException as exc:
                    # Client stop, shutdown, or the consumer closed us: bill what was produced (and free a held
                    # half-open probe), then let it go on.
                    await relay.aclose()
                    await self._abandon(att)
                    if isinstance(exc, asyncio.CancelledError):
                        yield SegmentEnded(att.seg)
                    raise
                decision = await self._conclude(run, index, att, retry)
                yield SegmentEnded(att.seg)
                if decision is None:
                    assert att.finish is not None
                    yield RouterDone(att.finish, run.segments, att.stop_sequence)
                    return
                form, retry = await self._apply(run, att, decision), retry + 1
                if form is not None and not await self.breaker.acquire(spec.provider, spec.upstream):
                    skip = "circuit_open"
            if skip is not None:
                for skipped in run.skip(spec, skip, self.clock()):
                    yield skipped
        raise run.exhausted()

    def _form_for(self, spec: ModelSpec, run: Run) -> RequestForm:
        if not run.text or run.aligned_restart:
            return "original"
        return "prefill" if accepts_prefill(spec, run.request) and spec.id not in self.no_prefill else "instruction"

    async def _admit(self, run: Run, spec: ModelSpec, keys: KeyResolver) -> str | None:
        """Why `spec` is skipped without a request, or None when it may be asked (its circuit then acquired)."""
        if run.segments and not run.has_output and self.clock() >= run.deadline:
            return "deadline_exceeded"
        if spec.provider in run.dead:
            return "auth_failed"
        if spec.provider not in self.providers:
            return "unavailable"
        if await run.credential(spec.provider, keys) is None:
            return "no_key"  # the session filters chains by key; a key deleted meanwhile just skips
        if not run.fits(spec):
            return "context_too_small"
        if spec is not run.chain[0] and not can_take_over(spec, run.request):
            return "cannot_honour"  # it would answer in another shape (no schema, no forced tool, …)
        if not await self.breaker.acquire(spec.provider, spec.upstream):
            return "circuit_open"
        return None

    def _attempt(self, run: Run, spec: ModelSpec, form: RequestForm, retry: int) -> UpstreamAttempt:
        partial = "".join(run.text) if form != "original" or run.aligned_restart else ""
        req = run.request if form == "original" else continuation_request(run.request, partial, form)
        req = for_model(spec, req)
        seg = Segment(len(run.segments) + 1, spec.id, spec.provider, retry=retry, form=form)
        run.segments.append(seg)
        cred = run.creds[spec.provider]
        assert cred is not None
        return UpstreamAttempt(
            self.providers[spec.provider],
            spec,
            cred,
            req,
            seg,
            partial=partial,
            from_start=run.aligned_restart,
            keep=run.text.append,
            on_reset=run.cut,
            first_timeout=spec.first_token_timeout or self.first_token_timeout_s,
            inter_timeout=spec.inter_token_timeout or self.inter_token_timeout_s,
            clock=self.clock,
        )

    async def _conclude(self, run: Run, index: int, att: UpstreamAttempt, retry: int) -> Decision | None:
        """Close the attempt, bill it, tell the breaker; None when it answered, else what to do next."""
        await att.close()
        spec = att.spec
        if att.failure is None and run.policy.on_refusal == "fallback" and not run.has_output:
            att.failure = att.refused()  # routed around like a refusal answered as an error
        failure = att.failure
        if failure is None:
            att.settle(self.clock())
            await self.breaker.success(spec.provider, spec.upstream)
            return None
        failed_at = att.seg.failed_at = self.clock()
        att.seg.status = "failed"
        att.settle(failed_at)
        run.failed_attempt(att.seg, failure, att.credential.api_key)
        if breaker_verdict(failure) == "failure":
            await self.breaker.failure(spec.provider, spec.upstream)
        else:
            await self.breaker.release(spec.provider, spec.upstream)
        log.info(
            "attempt failed",
            extra={"provider": spec.provider, "model": spec.id, "reason": failure.code, "segment": att.seg.number},
        )
        wait = None
        if failure.fast and not att.produced:
            wait = self.backoff.delay(retry, getattr(failure, "retry_after", None))
            if wait is not None and self.clock() + wait >= run.deadline:
                wait = None
        situation = Situation(
            att.produced, bool(run.text), run.tool_open, att.seg.form, wait, run.larger_window_after(index)
        )
        return decide(failure, situation, run.policy)

    async def _apply(self, run: Run, att: UpstreamAttempt, decision: Decision) -> RequestForm | None:
        """Carry out a decision: the form of the next attempt on this model, or None to leave it."""
        if decision.action == "fail":
            raise run.failed(decision.code, retryable=decision.retryable)
        if decision.action == "retry":
            await self.sleep(decision.wait)
            return att.seg.form
        if decision.action == "instruction":
            self.no_prefill.add(att.spec.id)
            return "instruction"
        assert att.failure is not None
        run.leave(att.spec, att.failure, decision, att.seg.failed_at or self.clock())
        return None

    async def _abandon(self, att: UpstreamAttempt) -> None:
        att.seg.status, att.seg.reason = "cancelled", "cancelled"
        att.settle(self.clock())
        await self.breaker.release(att.spec.provider, att.spec.upstream)
        await att.close()
