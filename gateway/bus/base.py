"""The live-spend bus: streams publish their running and settled cost; dashboards subscribe.

Publishing is synchronous and never blocks a stream: running ticks are coalesced (the latest per stream
wins) and a pump task hands batches to the backend every `flush_interval_s`. The backend only moves
serialized events between instances; delivery to local subscribers is shared here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import orjson

from gateway.aio import cancel_and_wait
from sessions.records import StreamRecord
from sessions.segment_json import money, segment_json

log = logging.getLogger("gateway.spend")

ALL = "*"  # subscribe to every user's spend (service role)


def _ts(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def stream_event(record: StreamRecord) -> bytes:
    """`spend.stream`: one finished stream, settled to the provider's usage."""
    return orjson.dumps(
        {
            "type": "spend.stream",
            "user_id": record.user_id,
            "stream_id": record.stream_id,
            "requested_model": record.requested_model,
            "status": record.status,
            "finish_reason": record.finish_reason,
            "error_code": record.error_code,
            "input_tokens": record.input_tokens,
            "output_tokens": record.output_tokens,
            "cached_input_tokens": record.cached_input_tokens,
            "cache_write_input_tokens": record.cache_write_input_tokens,
            "cost_usd": money(record.cost_usd),
            "estimated": record.estimated,
            "fallbacks": max(0, len(record.segments) - 1),
            "started_at": _ts(record.started_at),
            "ended_at": _ts(record.ended_at),
            "duration_ms": round(record.duration_ms, 1),
            "ttft_ms": None if record.ttft_ms is None else round(record.ttft_ms, 2),
            "segments": [segment_json(s) for s in record.segments],
        }
    )


def tick_event(user_id: str, stream_id: str, model: str, cost: Decimal, output_tokens: int) -> bytes:
    """`spend.tick`: a running stream's cost so far (estimated from the text streamed)."""
    return orjson.dumps(
        {
            "type": "spend.tick",
            "user_id": user_id,
            "stream_id": stream_id,
            "model": model,
            "cost_usd": money(cost),
            "output_tokens": output_tokens,
            "estimated": True,
            "at": _ts(datetime.now(UTC)),
        }
    )


class Subscription:
    """One subscriber's queue of serialized events. A subscriber that falls too far behind is closed
    (its client reconnects and reloads totals) rather than slowing everyone else down."""

    __slots__ = ("_queue", "closed", "lagged", "user_id")

    def __init__(self, user_id: str, max_queue: int) -> None:
        self.user_id = user_id
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(max_queue)
        self.closed = False
        self.lagged = False

    def put(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self._queue.put_nowait(data)
        except asyncio.QueueFull:
            self.lagged = True
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._queue.full():
            self._queue.get_nowait()  # room for the end marker: this subscriber is going away anyway
        self._queue.put_nowait(None)

    async def get(self) -> bytes | None:
        """The next event, or None once the subscription is closed."""
        return await self._queue.get()

    def get_batch(self) -> list[bytes]:
        """Whatever else is already queued, without waiting (for coalesced writes)."""
        out: list[bytes] = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is None:
                self._queue.put_nowait(None)
                break
            out.append(item)
        return out


class SpendBus:
    """Base for the backends: implements sessions.ports.SpendPublisher plus `subscribe`."""

    def __init__(self, *, flush_interval_s: float = 0.25, max_queue: int = 1000, max_outbox: int = 10_000) -> None:
        self.flush_interval_s = flush_interval_s
        self._max_queue = max_queue
        self._subs: dict[str, set[Subscription]] = {}
        self._ticks: dict[str, tuple[str, bytes]] = {}
        self._outbox: deque[tuple[str, bytes]] = deque(maxlen=max_outbox)
        self._wake = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self.published = 0
        self.delivered = 0

    # -- SpendPublisher (called from streams: must not block or raise) --------------

    def running(self, user_id: str, stream_id: str, model: str, cost_usd: Decimal, output_tokens: int) -> None:
        self._ticks[stream_id] = (user_id, tick_event(user_id, stream_id, model, cost_usd, output_tokens))
        self._wake.set()

    def finished(self, record: StreamRecord) -> None:
        self._ticks.pop(record.stream_id, None)  # the settled event supersedes a pending tick
        self._outbox.append((record.user_id, stream_event(record)))
        self._wake.set()

    # -- subscribers -------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def subscribe(self, user_id: str) -> AsyncIterator[Subscription]:
        """Events of one user, or of everyone with `ALL`, until the context exits."""
        sub = Subscription(user_id, self._max_queue)
        self._subs.setdefault(user_id, set()).add(sub)
        try:
            yield sub
        finally:
            sub.close()
            group = self._subs.get(user_id)
            if group is not None:
                group.discard(sub)
                if not group:
                    del self._subs[user_id]

    def subscriber_count(self) -> int:
        return sum(len(g) for g in self._subs.values())

    def deliver(self, user_id: str, data: bytes) -> None:
        """Hand one event (from this instance or another) to the local subscribers it concerns."""
        for key in (user_id, ALL):
            group = self._subs.get(key)
            if group:
                for sub in list(group):
                    sub.put(data)
                    self.delivered += 1

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        await self._open()
        if self._pump is None:
            self._pump = asyncio.create_task(self._run_pump(), name="spend bus pump")

    async def aclose(self) -> None:
        if self._pump is not None:
            await cancel_and_wait(self._pump)  # one cancel may be lost inside a Redis call
            self._pump = None
        await self._flush()  # what streams published during shutdown still goes out
        for group in list(self._subs.values()):
            for sub in list(group):
                sub.close()
        await self._close()

    async def _run_pump(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._flush()
            # Ticks arriving meanwhile are coalesced to one per stream for the next flush.
            await asyncio.sleep(self.flush_interval_s)

    async def _flush(self) -> None:
        batch = list(self._outbox)
        self._outbox.clear()
        if self._ticks:
            batch[:0] = self._ticks.values()  # ticks before the settled events queued after them
            self._ticks.clear()
        if batch:
            self.published += len(batch)
            await self._send(batch)

    # -- backend -------------------------------------------------------------------

    async def _open(self) -> None:
        return None

    async def _close(self) -> None:
        return None

    async def _send(self, batch: list[tuple[str, bytes]]) -> None:
        raise NotImplementedError
