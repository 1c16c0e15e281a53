"""Per-stream event log: a bounded ring of events with strictly increasing `seq`, each kept typed and encoded.

Every subscriber (WebSocket forwarder, SSE response, a resumed client) reads from the log with its own
cursor, so a reconnecting client replays exactly what it missed. Events are serialized once, at append.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from typing import Protocol

from sessions.errors import resume_too_old
from sessions.events import Event, decode


class LogEntry:
    """One event: its `seq`, its type name, its JSON bytes and the typed event. An entry read from another
    instance's log arrives as bytes and is decoded (once) only if a face asks for the typed event."""

    __slots__ = ("_event", "data", "name", "seq")

    def __init__(self, seq: int, name: str, data: bytes, event: Event | None = None) -> None:
        self.seq = seq
        self.name = name
        self.data = data
        self._event = event

    @property
    def event(self) -> Event:
        ev = self._event
        if ev is None:
            ev = self._event = decode(self.data)
        return ev

    def __repr__(self) -> str:
        return f"LogEntry({self.seq}, {self.name!r})"


class EventLog(Protocol):
    @property
    def last_seq(self) -> int: ...

    @property
    def closed(self) -> bool: ...

    def append(self, event: Event, data: bytes) -> None:
        """`data` is `event` as JSON (made by the stream's encoder, with this entry's seq)."""
        ...

    def close(self) -> None: ...

    async def check_cursor(self, after_seq: int) -> None:
        """Raise `resume_too_old` if events after `after_seq` were already dropped."""
        ...

    def follow(self, after_seq: int = 0) -> AsyncIterator[list[LogEntry]]: ...


class MemoryEventLog:
    """In-process log. Bounded by count and bytes; the oldest events fall off first."""

    __slots__ = ("_bytes", "_closed", "_entries", "_max_bytes", "_max_events", "_next_seq", "_waiters")

    def __init__(self, max_events: int = 10_000, max_bytes: int = 4 * 1024 * 1024) -> None:
        self._entries: deque[LogEntry] = deque()
        self._bytes = 0
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._next_seq = 1
        # One future per waiting follower (not one shared): a follower that is cancelled cancels only its
        # own, so no `shield` (an extra future and callbacks) is needed on every wait.
        self._waiters: list[asyncio.Future[None]] = []
        self._closed = False

    @property
    def last_seq(self) -> int:
        return self._next_seq - 1

    @property
    def closed(self) -> bool:
        return self._closed

    def append(self, event: Event, data: bytes) -> None:
        # A right-sized copy: orjson's output keeps its whole 4 KiB working buffer, which a log holding
        # thousands of events per stream would multiply into megabytes.
        data = bytes(memoryview(data))
        self._entries.append(LogEntry(self._next_seq, event.TYPE, data, event))
        self._next_seq += 1
        self._bytes += len(data)
        while len(self._entries) > self._max_events or (self._bytes > self._max_bytes and len(self._entries) > 1):
            self._bytes -= len(self._entries.popleft().data)
        self._wake()

    def close(self) -> None:
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for w in waiters:
                if not w.done():
                    w.set_result(None)

    async def check_cursor(self, after_seq: int) -> None:
        self.since(after_seq)

    def since(self, after_seq: int) -> list[LogEntry]:
        if after_seq >= self.last_seq:
            return []
        first = self._entries[0].seq if self._entries else self._next_seq
        if after_seq + 1 < first:
            raise resume_too_old(f"events after seq {after_seq} are no longer kept (oldest kept is {first})")
        start = after_seq + 1 - first
        return [self._entries[i] for i in range(start, len(self._entries))]

    async def follow(self, after_seq: int = 0) -> AsyncIterator[list[LogEntry]]:
        """Batches of events after `after_seq`, live, until the log is closed and drained.

        Events appended together arrive as one batch, which lets writers coalesce frames.
        """
        cursor = after_seq
        loop = asyncio.get_running_loop()
        while True:
            batch = self.since(cursor)
            if batch:
                cursor = batch[-1].seq
                yield batch
                continue
            if self._closed:
                return
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:  # cancelled while waiting: leave the list of waiters clean
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
                raise
