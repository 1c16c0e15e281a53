"""Reading a stream that lives on another instance, from its Redis mirror (`redis_log.RedisLogMirror`).

The follow ends with the stream's end marker, or with an error saying why it cannot go on:
- `resume_too_old`: a hole in the shared copy (events trimmed, or lost with a restarted Redis), Redis unreachable
  for `give_up_s`, or the stream's key gone for `missing_s` (expired, or lost and not written again);
- `stream_owner_lost`: no new events, and the owning instance's liveness mark gone for `owner_lost_s`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.aio import reraise_swallowed_cancel
from gateway.cluster.liveness import OWNER_LOST_S
from gateway.cluster.redis_log import RETRY_S, LogKeys, entry_id
from sessions.errors import GatewayError, fail, resume_too_old
from sessions.events import Event
from sessions.log import LogEntry

Idle = Literal["idle", "gone", "ownerless"]


class _Lasting:
    """How long each condition has held without a break."""

    def __init__(self) -> None:
        self._since: dict[str, float] = {}

    def over(self, what: str, limit_s: float) -> bool:
        now = time.monotonic()
        return now - self._since.setdefault(what, now) >= limit_s

    def clear(self, *what: str) -> None:
        for w in what:
            self._since.pop(w, None)


class RemoteLog:
    def __init__(
        self,
        redis: Redis,
        keys: LogKeys,
        stream_id: str,
        *,
        owner_alive: Callable[[], Awaitable[bool]] | None = None,
        block_ms: int = 1000,
        give_up_s: float = 30.0,
        missing_s: float = 5.0,
        owner_lost_s: float = OWNER_LOST_S,
    ) -> None:
        self.redis = redis
        self.key = keys.log(stream_id)
        self.owner_alive = owner_alive
        self.block_ms = block_ms
        self.give_up_s = give_up_s
        self.missing_s = missing_s
        self.owner_lost_s = owner_lost_s
        self._last_seq = 0
        self._closed = False

    @property
    def last_seq(self) -> int:
        return self._last_seq

    @property
    def closed(self) -> bool:
        return self._closed

    def append(self, event: Event, data: bytes) -> None:
        raise RuntimeError("a remote log is read-only")

    def close(self) -> None:
        self._closed = True

    async def check_cursor(self, after_seq: int) -> None:
        try:
            first: Any = await self.redis.xrange(self.key, "-", "+", count=1)  # redis-py's reply types are loose
        except (RedisError, OSError):
            raise resume_too_old("the stream's events cannot be read right now") from None
        if not first:
            raise resume_too_old("the stream's events are no longer kept")
        first_seq, part = entry_id(first[0][0])
        if part == 1:
            first_seq += 1  # only the end marker is left
        if after_seq + 1 < first_seq:
            raise resume_too_old(f"events after seq {after_seq} are no longer kept (oldest kept is {first_seq})")

    async def ended(self) -> bool:
        """Whether the stream's end is already in the log."""
        last: Any = await self.redis.xrevrange(self.key, "+", "-", count=1)
        return bool(last) and entry_id(last[0][0])[1] == 1

    async def follow(self, after_seq: int = 0) -> AsyncIterator[list[LogEntry]]:
        cursor = after_seq
        lasting = _Lasting()
        while not self._closed:
            try:
                reply: Any = await self.redis.xread({self.key: f"{cursor}-0"}, count=1000, block=self.block_ms)
                idle = None if reply else await self._idle()
            except (RedisError, OSError):
                reraise_swallowed_cancel()
                if lasting.over("failing", self.give_up_s):
                    raise resume_too_old("the stream's events cannot be read right now") from None
                await asyncio.sleep(RETRY_S)
                continue
            reraise_swallowed_cancel()  # a client that went away must not keep this loop reading
            lasting.clear("failing", *(c for c in ("gone", "ownerless") if c != idle))
            if idle is not None:
                await self._wait_idle(idle, lasting)
                continue
            batch, cursor, done, gap = self._batch(reply[0][1], cursor)
            if batch:
                self._last_seq = cursor
                yield batch
            if gap:
                raise resume_too_old(f"events after seq {cursor} are no longer kept")
            if done:
                self._closed = True
                return

    async def _idle(self) -> Idle:
        """Why no event came: the shared copy is gone, the owner is, or the stream is just quiet."""
        if not await self.redis.exists(self.key):
            return "gone"
        if self.owner_alive is not None and not await self.owner_alive():
            return "ownerless"
        return "idle"

    async def _wait_idle(self, idle: Idle, lasting: _Lasting) -> None:
        """Raises once a bad condition has lasted too long."""
        if idle == "gone":
            if lasting.over("gone", self.missing_s):
                raise resume_too_old("the stream's events are no longer kept")
            await asyncio.sleep(RETRY_S)
        elif idle == "ownerless" and lasting.over("ownerless", self.owner_lost_s):
            raise owner_lost()

    @staticmethod
    def _batch(entries: Any, cursor: int) -> tuple[list[LogEntry], int, bool, bool]:
        """The events that follow `cursor` without a hole: (them, the new cursor, ended, hole found)."""
        batch: list[LogEntry] = []
        for raw_id, fields in entries:
            seq, part = entry_id(raw_id)
            if part == 1:
                return batch, cursor, True, seq != cursor
            if seq != cursor + 1:
                return batch, cursor, False, True
            cursor = seq
            # Decoded into a typed event only if a face asks for it: WebSocket and SSE send the bytes.
            batch.append(LogEntry(seq, fields[b"n"].decode(), fields[b"d"]))
        return batch, cursor, False, False


def owner_lost() -> GatewayError:
    return fail("stream_owner_lost", "the instance running this stream stopped answering; start the request again")
