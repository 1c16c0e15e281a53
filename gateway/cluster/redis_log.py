"""Stream event logs mirrored to Redis Streams, so a client can resume on another instance.

The owning instance keeps its in-memory log (local subscribers never wait on Redis); appends are mirrored
in pipelined batches every few milliseconds by one flusher per instance, so the per-token cost is a list
append. Entry ids are `<seq>-0`, so a reader asks for "everything after seq N" directly; the end of a
stream is the entry `<last_seq>-1`. Seqs have no holes, so a reader notices any event it cannot get (trimmed,
or lost with a restarted Redis) and says so instead of skipping it.

A stream whose events could not be written (Redis unreachable), or whose shared copy vanished (Redis
restarted), is rewritten whole from the owner's in-memory log at the next successful flush, in one atomic
script: the in-memory log is the outage buffer, bounded by the stream log limits. Events that fell off it are
missing from the shared copy too, which readers then report as `resume_too_old`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from gateway.aio import cancel_and_wait
from gateway.cluster.health import RedisHealth
from sessions.events import Event
from sessions.log import LogEntry, MemoryEventLog

RETRY_S = 0.5  # between writes while Redis is unreachable


def entry_id(raw: bytes | str) -> tuple[int, int]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    seq, _, part = text.partition("-")
    return int(seq), int(part or 0)


# One call per stream and flush. KEYS: the log, its metadata. ARGV: mode, maxlen, ttl, user, instance, client
# (written with the first events or a rewrite: a lost hash comes with a lost log, which is then rewritten),
# the seq of the first event, the seq to end the stream at ("" if it goes on), then the events as one string of
# "<name> <length>\n<data>" records with consecutive seqs (one argument, not three per event: cheaper to send).
# mode "append": earlier events were written, so a missing log means they were lost: write nothing, return 0.
# mode "first": nothing written yet. mode "reset": replace the whole log.
# Events not above the log's last id are skipped, so a batch retried after a lost reply is harmless.
_WRITE = """
local mode = ARGV[1]
if mode == 'reset' then
  redis.call('DEL', KEYS[1])
elseif mode == 'append' and redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local top_seq, top_part = -1, -1
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #top > 0 then
  local s, p = string.match(top[1][1], '^(%d+)-(%d+)$')
  top_seq, top_part = tonumber(s), tonumber(p)
end
local blob, pos, seq = ARGV[9], 1, tonumber(ARGV[7])
while pos <= #blob do
  local sp = string.find(blob, ' ', pos, true)
  local nl = string.find(blob, '\\n', sp + 1, true)
  local size = tonumber(string.sub(blob, sp + 1, nl - 1))
  if seq > top_seq then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], string.format('%d-0', seq),
      'n', string.sub(blob, pos, sp - 1), 'd', string.sub(blob, nl + 1, nl + size))
  end
  pos, seq = nl + size + 1, seq + 1
end
if ARGV[8] ~= '' then
  local last = tonumber(ARGV[8])
  if last > top_seq or (last == top_seq and top_part < 1) then
    redis.call('XADD', KEYS[1], string.format('%d-1', last), 'n', '__end__', 'd', '')
  end
end
if mode ~= 'append' then
  redis.call('HSET', KEYS[2], 'user', ARGV[4], 'instance', ARGV[5], 'client', ARGV[6])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
"""


@dataclass(slots=True, frozen=True)
class LogKeys:
    prefix: str

    def log(self, stream_id: str) -> str:
        return f"{self.prefix}:log:{stream_id}"

    def meta(self, stream_id: str) -> str:
        return f"{self.prefix}:meta:{stream_id}"


@dataclass(slots=True)
class _Mirrored:
    log: MirroredLog
    user_id: str
    client_id: str
    written: bool = False  # some events are in Redis, so a missing key means they were lost
    closed_at: float | None = None
    last_seq: int = 0


class RedisLogMirror:
    """Batches appends from every live log of this instance into one pipeline per flush."""

    def __init__(
        self,
        redis: Redis,
        keys: LogKeys,
        *,
        instance_id: str,
        max_events: int,
        ttl_s: int,
        flush_interval_s: float = 0.01,
        health: RedisHealth | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.instance_id = instance_id
        self.max_events = max_events
        self.ttl_s = ttl_s
        self.flush_interval_s = flush_interval_s
        self.health = health or RedisHealth(instance_id=instance_id)
        self._sha = hashlib.sha1(_WRITE.encode(), usedforsecurity=False).hexdigest()  # how Redis names scripts
        self._streams: dict[str, _Mirrored] = {}
        self._pending: dict[str, list[LogEntry]] = {}
        self._closing: set[str] = set()
        self._dirty: set[str] = set()  # to be rewritten whole from the in-memory log
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.rewrites = 0

    @property
    def healthy(self) -> bool:
        return self.health.healthy

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="redis log mirror")

    async def aclose(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
        with contextlib.suppress(RedisError, OSError):
            await self.flush()

    def log_for(
        self, stream_id: str, user_id: str, max_events: int, max_bytes: int, client_id: str | None = None
    ) -> MirroredLog:
        log = MirroredLog(self, stream_id, max_events, max_bytes)
        self._streams[stream_id] = _Mirrored(log, user_id, client_id or "")
        return log

    def appended(self, stream_id: str, entry: LogEntry) -> None:
        batch = self._pending.get(stream_id)
        if batch is None:
            self._pending[stream_id] = [entry]
            self._wake.set()
        else:
            batch.append(entry)

    def closed(self, stream_id: str, last_seq: int) -> None:
        st = self._streams.get(stream_id)
        if st is not None:
            st.closed_at, st.last_seq = time.monotonic(), last_seq
        self._closing.add(stream_id)
        self._wake.set()

    async def _loop(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.redis.script_load(_WRITE)  # else loaded on the first NOSCRIPT
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.flush_interval_s)  # let a few tokens gather into one round trip
            self._wake.clear()
            try:
                await self.flush()
            except (RedisError, OSError) as exc:
                # Local clients are unaffected; the streams are rewritten from memory once Redis answers.
                self.health.failed("stream logs", exc)
                self._forget_expired()
                self._wake.set()
                await asyncio.sleep(RETRY_S)
                continue
            self.health.ok()

    async def flush(self, *, reload: bool = True) -> None:
        if not self._pending and not self._closing and not self._dirty:
            return
        pending, self._pending = self._pending, {}
        closing, self._closing = self._closing, set()
        dirty, self._dirty = self._dirty, set()
        pipe = self.redis.pipeline(transaction=False)
        queued = (
            self._write(pipe, sid, pending, closing, dirty) for sid in dict.fromkeys([*dirty, *pending, *closing])
        )
        plan = [step for step in queued if step is not None]
        try:
            results = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError, asyncio.CancelledError):
            self._dirty.update(sid for sid, _, _ in plan)
            raise
        failure, missing_script = self._settle(plan, results)
        if missing_script and reload:
            # A restarted Redis forgot the script (and the logs with it): load it and rewrite now.
            await self.redis.script_load(_WRITE)
            await self.flush(reload=False)
        if self._dirty:
            self._wake.set()
        if failure is not None:
            raise failure

    def _write(
        self, pipe: Any, sid: str, pending: dict[str, list[LogEntry]], closing: set[str], dirty: set[str]
    ) -> tuple[str, bool, str] | None:
        """Queue one stream's write on the pipeline: (stream id, whether it ends the stream, mode), or None."""
        st = self._streams.get(sid)
        if st is None:
            return None
        if sid in dirty:
            mode, entries, ends = "reset", st.log.kept(), st.closed_at is not None
        else:
            mode, entries, ends = ("append" if st.written else "first"), pending.get(sid, []), sid in closing
        parts: list[bytes] = []
        for e in entries:
            parts += (e.name.encode(), b" %d\n" % len(e.data), e.data)
        pipe.evalsha(
            self._sha,
            2,
            self.keys.log(sid),
            self.keys.meta(sid),
            mode,
            self.max_events,
            self.ttl_s,
            *((st.user_id, self.instance_id, st.client_id) if mode != "append" else ("", "", "")),
            entries[0].seq if entries else 0,
            st.last_seq if ends else "",
            b"".join(parts),
        )
        return sid, ends, mode

    def _settle(self, plan: list[tuple[str, bool, str]], results: list[Any]) -> tuple[Exception | None, bool]:
        """What each write did: (the first failure, whether Redis had forgotten the script)."""
        failure: Exception | None = None
        missing_script = False
        for i, (sid, ends, mode) in enumerate(plan):
            written, st = results[i], self._streams[sid]
            if isinstance(written, Exception) or not written:
                # Failed, or the shared copy vanished (Redis restarted): rewrite it whole next time.
                self._dirty.add(sid)
                if isinstance(written, NoScriptError):
                    missing_script = True
                elif isinstance(written, Exception):
                    failure = failure or written
                continue
            st.written = True
            if mode == "reset":
                # Counted when it happened, whichever way the copy was lost (a failed pipeline, a missing key,
                # a restarted Redis that forgot the script, which another instance may have reloaded first).
                self.rewrites += 1
            if ends:
                del self._streams[sid]
        return failure, missing_script

    def _forget_expired(self) -> None:
        """Streams that ended longer ago than the shared copy would live are not worth rewriting."""
        now = time.monotonic()
        for sid, st in list(self._streams.items()):
            if st.closed_at is not None and now - st.closed_at > self.ttl_s:
                del self._streams[sid]
                self._dirty.discard(sid)
                self._closing.discard(sid)
                self._pending.pop(sid, None)


class MirroredLog(MemoryEventLog):
    """The in-memory log, plus each event handed to the instance's mirror."""

    __slots__ = ("_mirror", "_sid")

    def __init__(self, mirror: RedisLogMirror, stream_id: str, max_events: int, max_bytes: int) -> None:
        super().__init__(max_events, max_bytes)
        self._mirror = mirror
        self._sid = stream_id

    def append(self, event: Event, data: bytes) -> None:
        super().append(event, data)
        # The entry just stored (the ring always keeps its newest): one object per event, not two.
        self._mirror.appended(self._sid, self._entries[-1])

    def close(self) -> None:
        if not self.closed:
            super().close()
            self._mirror.closed(self._sid, self.last_seq)

    def kept(self) -> list[LogEntry]:
        """Every event the in-memory log still holds, oldest first."""
        return self.since(self.last_seq - len(self._entries))
