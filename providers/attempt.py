"""One attempt: one request to one model, with its stall watchdog, the seam to the answer so far, and the segment
(usage, cost, timings) it leaves behind.

`relay()` streams what reaches the client (text, tool-call pieces, a `SeamReset`) and never raises a provider
failure: it ends with `finish` or `failure` set. A cancellation that is not the watchdog's propagates.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Final

from providers import errors
from providers.base import ChatRequest, Credential, Provider
from providers.catalog import ModelSpec
from providers.document_seam import DocumentAligner
from providers.events import (
    Finish,
    FinishReason,
    LogprobsDelta,
    ProviderEvent,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from providers.pricing import cost_usd, estimate_tokens
from providers.seam import HOLD_S, SeamAligner, SeamReset
from providers.segments import Segment
from providers.watchdog import Watchdog, monotonic

log = logging.getLogger("gateway.router")

# Thinking and log probabilities pass through untouched: neither is answer text, so the seam never sees them.
RelayEvent = TextDelta | ToolCallDelta | ReasoningDelta | LogprobsDelta | SeamReset

# A pending upstream read that came back empty-handed because the seam's hold ran out first.
_RELEASE: Final = object()
_END: Final = object()


class UpstreamAttempt:
    __slots__ = (
        "_on_reset",
        "_pending",
        "_pending_since",
        "chars",
        "clock",
        "credential",
        "failure",
        "finish",
        "finish_raw",
        "first_timeout",
        "got_usage",
        "inter_timeout",
        "it",
        "keep",
        "produced",
        "provider",
        "request",
        "seam",
        "seg",
        "spec",
        "started",
        "stop_sequence",
        "tool_chars",
        "tool_seen",
    )

    def __init__(
        self,
        provider: Provider,
        spec: ModelSpec,
        credential: Credential,
        request: ChatRequest,
        seg: Segment,
        *,
        partial: str,
        from_start: bool = False,
        keep: Callable[[str], None],
        on_reset: Callable[[SeamReset], None],
        first_timeout: float,
        inter_timeout: float,
        clock: Callable[[], float],
    ) -> None:
        self.provider = provider
        self.spec = spec
        self.credential = credential
        self.request = request
        self.seg = seg
        self.keep = keep  # appends to the text the client holds
        self._on_reset = on_reset
        self.first_timeout = first_timeout
        self.inter_timeout = inter_timeout
        self.clock = clock
        self.seam: SeamAligner | DocumentAligner | None = None
        if partial:
            self.seam = DocumentAligner(partial) if from_start else SeamAligner(partial)
        self.it: AsyncIterator[ProviderEvent] | None = None
        self.produced = False  # a token (text or tool call) came back
        self.chars = 0  # answer text this attempt added to what the client holds
        self.tool_chars = 0
        self.tool_seen = False  # a tool call reached the client
        self.got_usage = False
        self.finish: FinishReason | None = None
        self.finish_raw: str | None = None
        self.stop_sequence: str | None = None
        self.failure: errors.ProviderError | None = None
        self.started = 0.0
        self._pending: asyncio.Task[object] | None = None
        self._pending_since = 0.0

    def _stalled(self) -> errors.Stalled:
        what = "token" if self.produced else "response or first token"
        return errors.Stalled(f"no {what} within the timeout", provider=self.spec.provider, model=self.spec.id)

    async def relay(self) -> AsyncGenerator[RelayEvent, None]:
        task = asyncio.current_task()
        assert task is not None  # an async generator always runs inside a task
        wd = Watchdog(asyncio.get_running_loop(), task, self.first_timeout)
        self.it = it = self.provider.stream(self.request, self.spec.upstream, self.credential)
        anext_, stamp, keep = it.__anext__, monotonic, self.keep
        self.started = self.seg.sent_at = self.clock()
        try:
            try:
                # The per-token path: two float stores for the watchdog, one isinstance chain, one append.
                while True:
                    wd.since = stamp()
                    if self._pending is not None or (self.seam is not None and self.seam.holding):
                        ev = await self._read_held(anext_, wd)
                    else:
                        try:
                            ev = await anext_()
                        except StopAsyncIteration:
                            break
                    wd.since = 0.0
                    if isinstance(ev, TextDelta) and self.produced and self.seam is None:
                        self.chars += len(ev.text)
                        keep(ev.text)
                        yield ev
                    elif ev is _END:
                        break
                    else:
                        for out in self._event(ev, wd):
                            yield out
                wd.since = 0.0
                if self.finish is None:
                    raise errors.Truncated(
                        "stream ended without a finish reason", provider=self.spec.provider, model=self.spec.id
                    )
            except (asyncio.CancelledError, Exception) as exc:  # noqa: BLE001 - _failure_of logs what it does not expect
                self.failure = self._failure_of(exc, wd)
            finally:
                wd.stop()
            if wd.fired:
                # The adapter turned our cancellation into an error of its own: still a stall, unless someone else
                # cancelled the task too.
                if not wd.absorb():
                    raise asyncio.CancelledError
                self.failure = self._stalled()
        finally:
            await self._drop_pending()
        if self.seam is not None:
            # Whatever the seam still holds is decided now, before the answer ends or moves to the next model.
            for out in self._seamed(self.seam.flush()):
                yield out

    def _event(self, ev: object, wd: Watchdog) -> Sequence[RelayEvent]:
        """Everything but a plain token: the first token, text through the seam, tool calls, usage, the finish."""
        if isinstance(ev, TextDelta | ToolCallDelta) and not self.produced:
            self._first(wd)
        if isinstance(ev, TextDelta):
            if self.seam is not None:
                return self._seamed(self.seam.feed(ev.text))
            self.chars += len(ev.text)
            self.keep(ev.text)
            return (ev,)
        if isinstance(ev, ToolCallDelta):
            self.tool_chars += len(ev.arguments)
            self.tool_seen = True
            held = self._seamed(self.seam.flush()) if self.seam is not None else []
            return [*held, ev]
        if isinstance(ev, ReasoningDelta | LogprobsDelta):
            return (ev,)
        if isinstance(ev, Usage):
            self.seg.usage, self.got_usage = ev, True
        elif isinstance(ev, Finish):
            self.finish, self.finish_raw, self.stop_sequence = ev.reason, ev.raw, ev.stop_sequence
        elif ev is _RELEASE and self.seam is not None:
            return self._seamed(self.seam.expire())
        return ()

    def _failure_of(self, exc: BaseException, wd: Watchdog) -> errors.ProviderError:
        """What ended the attempt, as a failure; a cancellation that is not the watchdog's goes on."""
        if isinstance(exc, asyncio.CancelledError):
            if not wd.absorb():
                raise exc
            return self._stalled()
        if isinstance(exc, errors.ProviderError):
            return exc
        # An adapter bug fails this attempt, not the whole stream.
        log.error(
            "provider raised an unexpected exception",
            extra={"provider": self.spec.provider, "model": self.spec.id},
            exc_info=exc,
        )
        return errors.ProviderError(f"unexpected {type(exc).__name__}", provider=self.spec.provider, model=self.spec.id)

    def _first(self, wd: Watchdog) -> None:
        self.produced = True
        self.seg.ttft_ms = (self.clock() - self.started) * 1000
        wd.retime(self.inter_timeout)

    def _seamed(self, out: str) -> list[RelayEvent]:
        """The seam's verdict as events: a reset first (the client drops text), then the new text."""
        seam = self.seam
        assert seam is not None
        events: list[RelayEvent] = []
        if seam.reset is not None:
            events.append(seam.reset)
            self._on_reset(seam.reset)
            seam.reset = None
        if out:
            self.chars += len(out)
            self.keep(out)
            events.append(TextDelta(out))
        if seam.done:
            self.seam = None
        return events

    async def _read_held(self, anext_: Callable[[], Awaitable[ProviderEvent]], wd: Watchdog) -> object:
        """The next upstream event, or `_RELEASE` once the seam has held its text for `HOLD_S`.

        The read runs as its own task so the hold can end while it waits; that same read is awaited again after
        (an async generator takes one read at a time).
        """
        if self._pending is None:
            self._pending = asyncio.ensure_future(_pull(anext_))
            self._pending_since = wd.since
        else:
            wd.since = self._pending_since  # still the same wait on the upstream: the stall clock runs on
        seam = self.seam
        left = seam.held_since + HOLD_S - self.clock() if seam is not None and seam.holding else None
        done, _ = await asyncio.wait({self._pending}, timeout=None if left is None else max(0.0, left))
        if not done:
            return _RELEASE
        pending, self._pending = self._pending, None
        return pending.result()

    async def _drop_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        pending.cancel()
        # Wait for it to unwind without taking on its outcome (a cancellation of our own still comes through).
        await asyncio.wait({pending})
        if not pending.cancelled():
            pending.exception()  # retrieved: the read is abandoned, its error no longer matters

    def refused(self) -> errors.ContentRefused | None:
        """A stream the content filter ended before it said anything: the request was refused, in effect."""
        if self.finish != "content_filter" or self.produced:
            return None
        return errors.ContentRefused(
            "the provider's content filter ended the answer before it began",
            provider=self.spec.provider,
            model=self.spec.id,
            provider_code=self.finish_raw or "content_filter",
        )

    def settle(self, now: float) -> None:
        """Usage and cost of the finished attempt; estimated from the text where the provider never said."""
        elapsed = now - self.started if self.started else 0.0
        seg, spec = self.seg, self.spec
        seg.chars = self.chars
        seg.duration_ms = elapsed * 1000
        u = seg.usage
        out_chars = self.chars + self.tool_chars
        out_est = estimate_tokens("x" * out_chars) if out_chars else 0
        if seg.status == "ok" and not self.got_usage:
            u = Usage(estimate_tokens("".join(m.text() for m in self.request.messages)), out_est)
            seg.estimated = True
        elif seg.status != "ok" and out_est > u.output_tokens:
            # Output reached the client but its usage never came: bill an estimate rather than nothing.
            inp = u.input_tokens or estimate_tokens("".join(m.text() for m in self.request.messages))
            u = replace(u, input_tokens=inp, output_tokens=out_est)
            seg.estimated = True
        seg.usage = u
        seg.cost_usd = cost_usd(spec, u)

    async def close(self) -> None:
        await self._drop_pending()
        aclose = getattr(self.it, "aclose", None)
        if aclose is not None:
            await aclose()


async def _pull(anext_: Callable[[], Awaitable[ProviderEvent]]) -> object:
    try:
        return await anext_()
    except StopAsyncIteration:
        return _END
