"""One client request: runs the router, writes client events to the log, hands the record to the ledger."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal, cast

from providers import events as provider_events
from providers.base import ChatRequest
from providers.catalog import ModelSpec
from providers.errors import RateLimited
from providers.events import TextDelta, Usage
from providers.pricing import cost_usd, estimate_tokens
from providers.router import (
    AllModelsFailed,
    AttemptStarted,
    FallbackStarted,
    MidstreamPolicy,
    ModelSkipped,
    RefusalPolicy,
    Router,
    RouterDone,
    RouterEvent,
    SeamReset,
    SegmentEnded,
)
from providers.segments import KeyResolver, Segment
from sessions.allowance import Share
from sessions.events import (
    Delta,
    Done,
    Error,
    Event,
    Fallback,
    Logprobs,
    Reasoning,
    Seam,
    SegmentUsage,
    Skipped,
    Started,
    StreamEncoder,
    ToolCallDelta,
    Tried,
)
from sessions.fit import Fitted, LeftOut
from sessions.log import EventLog
from sessions.observer import StreamWatch
from sessions.ports import LedgerSink, SpendPublisher
from sessions.records import StreamRecord, StreamStatus

log = logging.getLogger("gateway.stream")

CancelReason = Literal["client", "disconnect", "drain", "budget", "shutdown"]

# How many deltas between running-cost updates (live spend, budget checks): keeps the per-token path free.
TICK_EVERY = 32
# ...and at most this long between them while tokens flow, so a slow or short stream visibly counts up.
TICK_INTERVAL_S = 0.5
# How many deltas may be parsed back to back before the loop lets the writers run.
YIELD_EVERY = 16


def failed_event(exc: AllModelsFailed, left_out: Sequence[LeftOut] = ()) -> Error:
    """The `error` that ends a stream no model answered; it passes on when the last provider said to retry. The
    fallbacks left out before the start (`sessions.fit`) are named first."""
    attempts = tuple(Tried(m.model, m.reason, m.provider) for m in left_out) + tuple(
        Tried(a.model, a.reason, a.provider, a.segment, a.provider_code, a.provider_message) for a in exc.attempts
    )
    retry_after = exc.final.retry_after if isinstance(exc.final, RateLimited) else None
    said = ", ".join([*(f"{m.model}: {m.reason} ({', '.join(m.params)})" for m in left_out), str(exc)])
    return Error(exc.code, f"every model failed: {said}", exc.retryable, attempts, retry_after_s=retry_after)


class StreamSession:
    def __init__(
        self,
        *,
        stream_id: str,
        user_id: str,
        client_id: str | None,
        request: ChatRequest,
        chain: Sequence[ModelSpec],
        policy: MidstreamPolicy,
        router: Router,
        on_refusal: RefusalPolicy = "error",
        keys: KeyResolver,
        log: EventLog,
        ledger: LedgerSink,
        spend: SpendPublisher,
        budget: Share | None = None,
        on_end: Callable[[StreamSession], None] | None = None,
        watch: StreamWatch | None = None,
        fitted: Fitted | None = None,
    ) -> None:
        self.id = stream_id
        self.user_id = user_id
        self.client_id = client_id
        self.request = request
        self.chain = list(chain)
        self.policy = policy
        self.on_refusal: RefusalPolicy = on_refusal
        self.log = log
        self.subscribers = 0
        self.record: StreamRecord | None = None
        self.cancel_reason: CancelReason | None = None
        self._router = router
        self._keys = keys
        self._ledger = ledger
        self._spend = spend
        self.budget = budget
        self._on_end = on_end
        self._watch = watch  # tracing: told at attempt boundaries only, never per token
        self.task: asyncio.Task[None] | None = None
        self._started_at = datetime.now(UTC)
        self._ttft_ms: float | None = None
        self.current_model: ModelSpec = self.chain[0]
        self.encoder = StreamEncoder(stream_id, client_id)
        self._started = False  # `stream.started` was sent
        # How the request was fitted to the chain (None: not asked); its left-out fallbacks count as skipped.
        self.fitted = fitted
        self._left_out: tuple[LeftOut, ...] = fitted.left_out if fitted is not None else ()
        self._skipped: list[Skipped] = [Skipped(m.model, m.provider, m.reason) for m in self._left_out]

    @property
    def finished(self) -> bool:
        return self.record is not None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"stream {self.id}")

    async def wait(self) -> None:
        if self.task is not None:
            await asyncio.shield(self.task)

    def cancel(self, reason: CancelReason) -> bool:
        """Stop generating now: the upstream request is closed and the partial output billed."""
        if self.task is None or self.task.done():
            return False
        self.cancel_reason = reason
        self.task.cancel()
        return True

    def emit(self, event: Event) -> None:
        """Append an event to the log, encoded once, here."""
        self.log.append(event, self.encoder.encode(self.log.last_seq + 1, event))

    async def _run(self) -> None:
        segments: list[Segment] = []
        status: StreamStatus = "error"
        finish: str | None = None
        stop_sequence: str | None = None
        error_code: str | None = None
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        tick_at = t0 + TICK_INTERVAL_S
        deltas = 0
        seg_chars = 0
        # Per-token path below: one isinstance, one encode, one append; the rarer events go to `_on_event`.
        log, delta = self.log, self.encoder.delta
        events = self._router.stream(self.request, self.chain, self._keys, self.policy, on_refusal=self.on_refusal)
        try:
            async for ev in events:
                if isinstance(ev, TextDelta):
                    log.append(Delta(ev.text), delta(log.last_seq + 1, ev.text))
                    if self._ttft_ms is None:
                        self._ttft_ms = (loop.time() - t0) * 1000
                    deltas += 1
                    seg_chars += len(ev.text)
                    if deltas % YIELD_EVERY == 1:
                        # Tokens that arrived in one read are parsed without a suspension point: let the
                        # subscribers send the first one now, and let other streams run every few tokens.
                        await asyncio.sleep(0)
                    if deltas % TICK_EVERY == 0 or loop.time() >= tick_at:
                        tick_at = loop.time() + TICK_INTERVAL_S
                        if self._tick(segments, seg_chars):
                            await self._stop_for_budget(events, segments)
                elif isinstance(ev, RouterDone):
                    status, finish, stop_sequence = "done", ev.finish_reason, ev.stop_sequence
                elif self._on_event(ev, segments, loop, t0):
                    seg_chars = 0  # a new attempt
            if status == "done":
                self.emit(self._done(finish, segments, stop_sequence))
        except AllModelsFailed as exc:
            error_code = exc.code
            self.emit(failed_event(exc, self._left_out))
        except asyncio.CancelledError:
            status, finish, error_code = self._stopped(segments)
            if self.cancel_reason is None:  # cancelled by the loop itself (shutdown): keep propagating
                self._finish(status, finish, error_code, segments)
                raise
        finally:
            # Closes the upstream response at once if the loop above ended early (a cancel, an error).
            await events.aclose()
            if self.record is None:
                self._finish(status, finish, error_code, segments)

    def _on_event(self, ev: RouterEvent, segments: list[Segment], loop: asyncio.AbstractEventLoop, t0: float) -> bool:
        """Every event but a text delta and the end, which `_run` takes itself. True: a new attempt started (the
        live segment's text, for the running cost, counts from nothing again)."""
        if isinstance(ev, provider_events.ToolCallDelta):
            if self._ttft_ms is None:
                self._ttft_ms = (loop.time() - t0) * 1000
            self.emit(ToolCallDelta(ev.index, ev.id, ev.name, ev.arguments))
        elif isinstance(ev, provider_events.ReasoningDelta):
            self.emit(Reasoning(ev.text, ev.signature, ev.redacted))
        elif isinstance(ev, provider_events.LogprobsDelta):
            self.emit(Logprobs(ev.tokens))
        elif isinstance(ev, AttemptStarted):
            self.current_model = ev.model
            if self._watch is not None:
                self._watch.attempt(ev)
            self._announce(ev.model)
            return True
        elif isinstance(ev, FallbackStarted):
            if self._watch is not None:
                self._watch.fallback(ev)
            self.emit(Fallback(ev.from_model, ev.to_model, ev.reason, ev.chars_so_far, ev.mode))
        elif isinstance(ev, SeamReset):
            self.emit(Seam(ev.keep_chars, ev.discard_chars, ev.reason))
        elif isinstance(ev, ModelSkipped):
            self._skipped.append(Skipped(ev.model.id, ev.model.provider, ev.reason))
            if ev.announced:
                self._announce(ev.model)
        elif isinstance(ev, SegmentEnded):
            self._segment_ended(ev.segment, segments)
        return False

    def _stopped(self, segments: list[Segment]) -> tuple[StreamStatus, str | None, str | None]:
        """The stream was stopped: its last event says how. Returns (status, finish reason, error code)."""
        if self.cancel_reason == "budget":
            self.emit(Error("budget_exceeded", "your spend cap was reached"))
            return "budget_exceeded", None, "budget_exceeded"
        self.emit(self._done("cancelled", segments))
        return "cancelled", "cancelled", None

    def _done(self, finish: str | None, segments: list[Segment], stop_sequence: str | None = None) -> Done:
        return Done(finish, tuple(segments), tuple(self._skipped), stop_sequence)

    def _announce(self, model: ModelSpec) -> None:
        """`stream.started` names the first model the router turned to, asked or skipped by its circuit."""
        if not self._started:
            self._started = True
            self.emit(Started(model.id, model.provider))

    def _segment_ended(self, segment: Segment, segments: list[Segment]) -> None:
        segments.append(segment)
        if self._watch is not None:
            self._watch.segment(segment)
        self.emit(SegmentUsage(segment))

    def _tick(self, segments: list[Segment], seg_chars: int) -> bool:
        """Running cost while streaming: settled segments plus an estimate for the live one. True: over budget."""
        live = cost_usd(self.current_model, Usage(output_tokens=estimate_tokens("x" * seg_chars)))
        running = sum((s.cost_usd for s in segments), Decimal(0)) + live
        out = sum(s.usage.output_tokens for s in segments) + (seg_chars + 3) // 4
        self._spend.running(self.user_id, self.id, self.current_model.id, running, out)
        return self.budget is not None and self.budget.over(self.id, running)

    async def _stop_for_budget(self, events: AsyncIterator[RouterEvent], segments: list[Segment]) -> None:
        """The cap is reached: cancel the upstream from inside the router, where a task cancel would land,
        so the live segment is closed, settled and billed. Cancelling the task instead only takes effect at
        the upstream's next pause, and an upstream that has the rest of the answer buffered never pauses."""
        self.cancel_reason = "budget"
        gen = cast(AsyncGenerator[RouterEvent, None], events)
        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
            ev = await gen.athrow(asyncio.CancelledError())
            while True:
                if isinstance(ev, SegmentEnded):
                    self._segment_ended(ev.segment, segments)
                ev = await gen.__anext__()
        raise asyncio.CancelledError

    def _finish(
        self, status: StreamStatus, finish: str | None, error_code: str | None, segments: list[Segment]
    ) -> None:
        self.record = StreamRecord(
            stream_id=self.id,
            user_id=self.user_id,
            client_id=self.client_id,
            requested_model=self.chain[0].id,
            status=status,
            finish_reason=finish,
            error_code=error_code,
            started_at=self._started_at,
            ended_at=datetime.now(UTC),
            segments=segments,
            ttft_ms=self._ttft_ms,
        )
        self.log.close()
        if self._watch is not None:
            self._watch.ended(self.record)
        self._ledger.submit(self.record)
        if self.budget is not None:
            self.budget.finished(self.id, self.record.cost_usd)
        self._spend.finished(self.record)
        rec = self.record
        log.info(
            "stream end",
            extra={
                "stream_id": self.id,
                "user_id": self.user_id,
                "model": rec.requested_model,
                "models_tried": rec.models_tried,
                "status": status,
                "input_tokens": rec.input_tokens,
                "output_tokens": rec.output_tokens,
                "cost_usd": str(rec.cost_usd),
                "duration_ms": round(rec.duration_ms, 1),
            },
        )
        if self._on_end is not None:
            self._on_end(self)
