"""Stream event logs mirrored to Redis Streams, so a client can resume on another instance.

The owning instance keeps its in-memory log (local subscribers never wait on Redis); appends are mirrored
in pipelined batches every few milliseconds by one flusher per instance, so the per-token cost is a list
append. Entry ids are `<seq>-0`, so a reader asks for "everything after seq N" directly; the end of a
stream is the entry `<last_seq>-1`. Seqs have no holes, so a reader notices any event it cannot get (trimmed,
or lost with a restarted Redis) and says so instead of skipping it.

While Redis is unreachable the mirror keeps what it could not write (bounded) and writes it when Redis is back;
what overflowed is missing from the shared copy, which readers then report as `resume_too_old`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from gateway.cluster.health import RedisHealth
from sessions.log import LogEntry, MemoryEventLog, ResumeTooOld

END = b"__end__"
RETRY_S = 0.5  # between writes while Redis is unreachable


class LogUnavailable(ResumeTooOld):
    """The shared copy of a stream cannot be read (Redis unreachable for too long, or the stream expired)."""


def _entry_id(raw: bytes | str) -> tuple[int, int]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    seq, _, part = text.partition("-")
    return int(seq), int(part or 0)


def _already_written(result: object) -> bool:
    # A retried batch meets the entries an earlier, partly applied batch already wrote.
    return isinstance(result, ResponseError) and "equal or smaller" in str(result)


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
        max_pending: int = 100_000,
        health: RedisHealth | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.instance_id = instance_id
        self.max_events = max_events
        self.ttl_s = ttl_s
        self.flush_interval_s = flush_interval_s
        self.max_pending = max_pending
        self.health = health or RedisHealth(instance_id=instance_id)
        self._pending: dict[str, list[LogEntry]] = {}
        self._closing: dict[str, int] = {}
        self._owners: dict[str, tuple[str, str]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0  # events never mirrored because an outage outlasted the buffer

    @property
    def healthy(self) -> bool:
        return self.health.healthy

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="redis log mirror")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(RedisError, OSError):
            await self.flush()

    def log_for(
        self, stream_id: str, user_id: str, max_events: int, max_bytes: int, client_id: str | None = None
    ) -> MirroredLog:
        self._owners[stream_id] = (user_id, client_id or "")
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
            except (RedisError, OSError) as exc:
                # Local clients are unaffected; what was not written is kept for the next try.
                self.health.failed("stream logs", exc)
                self._wake.set()
                await asyncio.sleep(RETRY_S)
                continue
            self.health.ok()

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
            self._touch(pipe, sid)
        for sid, last in closing.items():
            pipe.xadd(self.keys.log(sid), {"n": END, "d": b""}, id=f"{last}-1")
            self._touch(pipe, sid)
        try:
            results = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError, asyncio.CancelledError):
            self._requeue(pending, closing)
            raise
        failure = next((r for r in results if isinstance(r, Exception) and not _already_written(r)), None)
        if failure is not None:
            self._requeue(pending, closing)
            raise failure
        for sid in closing:
            self._owners.pop(sid, None)

    def _touch(self, pipe: Any, sid: str) -> None:
        user, client = self._owners.get(sid, ("", ""))
        meta = self.keys.meta(sid)
        pipe.hset(meta, mapping={"user": user, "instance": self.instance_id, "client": client})
        pipe.expire(self.keys.log(sid), self.ttl_s)
        pipe.expire(meta, self.ttl_s)

    def _requeue(self, pending: dict[str, list[LogEntry]], closing: dict[str, int]) -> None:
        """Put back what a failed write held, before anything appended since, within the bounds."""
        newer, merged = self._pending, {}
        for sid, entries in pending.items():
            merged[sid] = entries + newer.pop(sid, [])
        merged.update(newer)
        total = 0
        for sid, entries in merged.items():
            if len(entries) > self.max_events:
                self.dropped += len(entries) - self.max_events
                merged[sid] = entries = entries[-self.max_events :]
            total += len(entries)
        # Over the overall bound, the streams waiting longest lose their backlog first.
        for sid in list(merged):
            if total <= self.max_pending:
                break
            total -= len(merged[sid])
            self.dropped += len(merged[sid])
            del merged[sid]
        self._pending = merged
        for sid, last in closing.items():
            self._closing.setdefault(sid, last)


class MirroredLog(MemoryEventLog):
    """The in-memory log, plus each event handed to the instance's mirror."""

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
    """Reads a stream that lives on another instance, from its Redis mirror.

    Redis errors while following are retried for `give_up_s`; a stream whose key stays gone for `missing_s`
    (expired, or lost with a restarted Redis and not written again) ends the follow with `LogUnavailable`.
    """

    def __init__(
        self,
        redis: Redis,
        keys: LogKeys,
        stream_id: str,
        *,
        block_ms: int = 1000,
        give_up_s: float = 30.0,
        missing_s: float = 5.0,
    ) -> None:
        self.redis = redis
        self.key = keys.log(stream_id)
        self.block_ms = block_ms
        self.give_up_s = give_up_s
        self.missing_s = missing_s
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
        try:
            first: Any = await self.redis.xrange(self.key, "-", "+", count=1)  # redis-py's reply types are loose
        except (RedisError, OSError):
            raise LogUnavailable("the stream's events cannot be read right now") from None
        if not first:
            raise ResumeTooOld("the stream's events are no longer kept")
        first_seq, part = _entry_id(first[0][0])
        if part == 1:
            first_seq += 1  # only the end marker is left
        if after_seq + 1 < first_seq:
            raise ResumeTooOld(f"events after seq {after_seq} are no longer kept (oldest kept is {first_seq})")

    async def ended(self) -> bool:
        """Whether the stream's end is already in the log."""
        last: Any = await self.redis.xrevrange(self.key, "+", "-", count=1)
        return bool(last) and _entry_id(last[0][0])[1] == 1

    async def follow(self, after_seq: int = 0) -> AsyncIterator[list[LogEntry]]:
        cursor = after_seq
        failing_since: float | None = None
        missing_since: float | None = None
        while not self._closed:
            try:
                reply: Any = await self.redis.xread({self.key: f"{cursor}-0"}, count=1000, block=self.block_ms)
                gone = not reply and not await self.redis.exists(self.key)
            except (RedisError, OSError):
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since >= self.give_up_s:
                    raise LogUnavailable("the stream's events cannot be read right now") from None
                await asyncio.sleep(RETRY_S)
                continue
            failing_since = None
            if gone:
                now = time.monotonic()
                missing_since = missing_since or now
                if now - missing_since >= self.missing_s:
                    raise LogUnavailable("the stream's events are no longer kept")
                await asyncio.sleep(RETRY_S)
                continue
            missing_since = None
            if not reply:
                continue
            batch: list[LogEntry] = []
            done = gap = False
            for entry_id, fields in reply[0][1]:
                seq, part = _entry_id(entry_id)
                if part == 1:
                    done, gap = True, seq != cursor
                    break
                if seq != cursor + 1:
                    gap = True
                    break
                cursor = seq
                batch.append(LogEntry(seq, fields[b"n"].decode(), fields[b"d"]))
            if batch:
                self._last_seq = cursor
                yield batch
            if gap:
                raise ResumeTooOld(f"events after seq {cursor} are no longer kept")
            if done:
                self._closed = True
                return
