"""Live spend over SSE (`GET /v1/usage/stream`): the spend bus's events for one subscriber, as they come.

Events carry no `id:` line: after a reconnect a dashboard reloads `GET /v1/usage` and follows again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from gateway.bus import SpendBus, Subscription
from gateway.faces import sse
from gateway.openapi import EventStream
from gateway.replies import SPEND_FRAMES
from sessions.errors import GatewayError

PREAMBLE = b"retry: 3000\n: subscribed\n\n"
SPEND_EVENTS = EventStream(
    "Server-sent events without `id:`, endless: `spend.tick` while a stream runs (its running, estimated cost) and "
    "`spend.stream` when it ends (settled); after a reconnect, reload `GET /v1/usage` and follow again.",
    SPEND_FRAMES,
)


def event_name(data: bytes) -> bytes:
    # Bus events are serialized with "type" first, so the name is read without parsing the JSON.
    if data.startswith(b'{"type":"'):
        end = data.find(b'"', 9)
        if end > 9:
            return data[9:end]
    return b"message"


class SpendSource:
    """One subscription to the bus, for one user (or everyone). Subscribed before the response starts, so a
    client holding the response misses nothing after it."""

    def __init__(self, bus: SpendBus, key: str) -> None:
        self.bus = bus
        self.key = key

    async def check(self) -> None:
        return None

    def open(self) -> AbstractAsyncContextManager[AsyncIterator[Sequence[bytes]]]:
        return self._open()

    @asynccontextmanager
    async def _open(self) -> AsyncIterator[AsyncIterator[Sequence[bytes]]]:
        async with self.bus.subscribe(self.key) as sub:
            yield _batches(sub)

    async def stop(self) -> None:
        return None


async def _batches(sub: Subscription) -> AsyncIterator[Sequence[bytes]]:
    while (first := await sub.get()) is not None:
        yield [first, *sub.get_batch()]


class SpendFrames:
    def events(self, batch: Sequence[bytes]) -> bytes | None:
        parts: list[bytes] = []
        for data in batch:
            parts += sse.event(event_name(data), data)
        return b"".join(parts)

    def failed(self, error: GatewayError) -> bytes | None:
        return None

    def end(self) -> bytes | None:
        return None
