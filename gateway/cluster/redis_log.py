"""Stream event logs mirrored to Redis Streams, so a client can resume on another instance.

The owning instance keeps its in-memory log (local subscribers never wait on Redis); appends are mirrored
in pipelined batches every few milliseconds by one flusher per instance, so the per-token cost is a list
append. Entry ids are `<seq>-0`, so a reader asks for "everything after seq N" directly; the end of a
stream is the entry `<last_seq>-1`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from sessions.log import LogEntry, MemoryEventLog, ResumeTooOld

log = logging.getLogger("gateway.cluster")

END = b"__end__"


@dataclass(slots=True, frozen=True)
class LogKeys:
    prefix: str

    def log(self, stream_id: str) -> str:
        return f"{self.prefix}:log:{stream_id}"

    def meta(self, stream_id: str) -> str:
        return f"{self.prefix}:meta:{stream_id}"


class RedisLogMirror:
    """Batches appends from every live log of this instance into pipelined XADDs."""

    def __init__(
        self,
        redis: Redis,
        keys: LogKeys,
        *,
        instance_id: str,
        max_events: int,
        ttl_s: int,
        flush_interval_s: float = 0.01,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.instance_id = instance_id
        self.max_events = max_events
        self.ttl_s = ttl_s
        self.flush_interval_s = flush_interval_s
        self._pending: dict[str, list[LogEntry]] = {}
        self._closing: dict[str, int] = {}
        self._owners: dict[str, str] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.healthy = True

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="redis log mirror")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(RedisError, OSError):
            await self.flush()

    def log_for(self, stream_id: str, user_id: str, max_events: int, max_bytes: int) -> MirroredLog:
        self._owners[stream_id] = user_id
        return MirroredLog(self, stream_id, max_events, max_bytes)

    def appended(self, stream_id: str, entry: LogEntry) -> None:
        batch = self._pending.get(stream_id)
        if batch is None:
            self._pending[stream_id] = [entry]
            self._wake.set()
        else:
            batch.append(entry)

    def closed(self, stream_id: str, last_seq: int) -> None:
        self._closing[stream_id] = last_seq
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.flush_interval_s)  # let a few tokens gather into one round trip
            self._wake.clear()
            try:
                await self.flush()
                if not self.healthy:
                    log.warning("redis is back: stream logs are shared again")
                self.healthy = True
            except (RedisError, OSError) as exc:
                if self.healthy:
                    log.warning("redis unavailable: stream logs stay in process", extra={"error": str(exc)})
                self.healthy = False
                # Drop what could not be mirrored: local clients are unaffected; remote resume is best effort.
                self._pending.clear()
                self._closing.clear()

    async def flush(self) -> None:
        if not self._pending and not self._closing:
            return
        pending, self._pending = self._pending, {}
        closing, self._closing = self._closing, {}
        pipe = self.redis.pipeline(transaction=False)
        for sid, entries in pending.items():
            key = self.keys.log(sid)
            for e in entries:
                pipe.xadd(key, {"n": e.name, "d": e.data}, id=f"{e.seq}-0", maxlen=self.max_events, approximate=True)
            pipe.hset(self.keys.meta(sid), mapping={"user": self._owners.get(sid, ""), "instance": self.instance_id})
            pipe.expire(key, self.ttl_s)
            pipe.expire(self.keys.meta(sid), self.ttl_s)
        for sid, last in closing.items():
            key = self.keys.log(sid)
            pipe.xadd(key, {"n": END, "d": b""}, id=f"{last}-1")
            pipe.hset(self.keys.meta(sid), mapping={"user": self._owners.pop(sid, ""), "instance": self.instance_id})
            pipe.expire(key, self.ttl_s)
            pipe.expire(self.keys.meta(sid), self.ttl_s)
        await pipe.execute()


class MirroredLog(MemoryEventLog):
    """The in-memory log, plus a copy of each event handed to the instance's mirror."""

    __slots__ = ("_mirror", "_sid")

    def __init__(self, mirror: RedisLogMirror, stream_id: str, max_events: int, max_bytes: int) -> None:
        super().__init__(max_events, max_bytes)
        self._mirror = mirror
        self._sid = stream_id

    def append(self, name: str, data: bytes) -> None:
        seq = self.last_seq + 1
        super().append(name, data)
        self._mirror.appended(self._sid, LogEntry(seq, name, data))

    def close(self) -> None:
        if not self.closed:
            super().close()
            self._mirror.closed(self._sid, self.last_seq)


class RemoteLog:
    """Reads a stream that lives on another instance, from its Redis mirror."""

    def __init__(self, redis: Redis, keys: LogKeys, stream_id: str, *, block_ms: int = 1000) -> None:
        self.redis = redis
        self.key = keys.log(stream_id)
        self.block_ms = block_ms
        self._last_seq = 0
        self._closed = False

    @property
    def last_seq(self) -> int:
        return self._last_seq

    @property
    def closed(self) -> bool:
        return self._closed

    def append(self, name: str, data: bytes) -> None:
        raise RuntimeError("a remote log is read-only")

    def close(self) -> None:
        self._closed = True

    async def check_cursor(self, after_seq: int) -> None:
        first: Any = await self.redis.xrange(self.key, "-", "+", count=1)  # redis-py's reply types are loose
        if not first:
            raise ResumeTooOld("the stream's events are no longer kept")
        first_seq = int(first[0][0].split(b"-")[0])
        if after_seq + 1 < first_seq:
            raise ResumeTooOld(f"events after seq {after_seq} are no longer kept (oldest kept is {first_seq})")

    async def follow(self, after_seq: int = 0) -> AsyncIterator[list[LogEntry]]:
        cursor = f"{after_seq}-0"
        while not self._closed:
            reply: Any = await self.redis.xread({self.key: cursor}, count=1000, block=self.block_ms)
            if not reply:
                if not await self.redis.exists(self.key):
                    return  # expired or deleted: nothing more will come
                continue
            batch: list[LogEntry] = []
            done = False
            for entry_id, fields in reply[0][1]:
                cursor = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                seq, _, part = cursor.partition("-")
                if part == "1" or fields.get(b"n") == END:
                    done = True
                    break
                self._last_seq = int(seq)
                batch.append(LogEntry(int(seq), fields[b"n"].decode(), fields[b"d"]))
            if batch:
                yield batch
            if done:
                self._closed = True
                return
