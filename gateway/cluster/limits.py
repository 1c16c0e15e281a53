"""Per-user stream limits shared by every instance through Redis.

Running streams are leases in a sorted set scored by their expiry; the owning instance refreshes its
leases while the streams run, so a crashed instance's streams stop counting after the lease time.
Starts a minute are a sorted set of start times. Both checks and the admission are one Lua call.
When Redis is unreachable, the in-process limiter takes over (with a warning) and streams carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.aio import cancel_and_wait
from gateway.cluster.health import RedisHealth
from sessions.errors import fail
from sessions.limits import MemoryUserLimiter

LEASE_S = 30.0
REFRESH_S = 10.0

_ADMIT = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 60)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return {1, 0} end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return {2, tostring(oldest[2])}
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[5]), ARGV[2])
redis.call('ZADD', KEYS[2], now, ARGV[2])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[5])) + 5)
redis.call('EXPIRE', KEYS[2], 65)
return {0, 0}
"""


class RedisUserLimiter:
    def __init__(
        self,
        redis: Redis,
        prefix: str,
        max_concurrent: int,
        starts_per_minute: int,
        *,
        health: RedisHealth | None = None,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.max_concurrent = max_concurrent
        self.starts_per_minute = starts_per_minute
        self.fallback = MemoryUserLimiter(max_concurrent, starts_per_minute)
        self._admit: Any = redis.register_script(_ADMIT)
        self._leases: dict[str, list[str]] = {}
        self._local_only: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._refresher: asyncio.Task[None] | None = None
        self.health = health or RedisHealth()

    @property
    def healthy(self) -> bool:
        return self.health.healthy

    def _running_key(self, user_id: str) -> str:
        return f"{self.prefix}:running:{user_id}"

    def _starts_key(self, user_id: str) -> str:
        return f"{self.prefix}:starts:{user_id}"

    def start(self) -> None:
        self._refresher = asyncio.create_task(self._refresh_loop(), name="lease refresher")

    async def aclose(self) -> None:
        if self._refresher is not None:
            await cancel_and_wait(self._refresher)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def admit(self, user_id: str) -> None:
        lease = secrets.token_hex(8)
        try:
            if not self.health.usable():
                raise RedisError("skipped while redis is unavailable")
            code, oldest = await self._admit(
                keys=[self._running_key(user_id), self._starts_key(user_id)],
                args=[time.time(), lease, self.max_concurrent, self.starts_per_minute, LEASE_S],
            )
        except (RedisError, OSError) as exc:
            self.health.failed("stream limits", exc)
            await self.fallback.admit(user_id)
            self._local_only[user_id] = self._local_only.get(user_id, 0) + 1
            return
        self.health.ok()
        if int(code) == 1:
            raise fail("too_many_streams", f"at most {self.max_concurrent} concurrent streams")
        if int(code) == 2:
            retry = max(0.0, float(oldest) + 60 - time.time())
            raise fail("rate_limited", f"at most {self.starts_per_minute} streams a minute", retry_after_s=retry)
        self._leases.setdefault(user_id, []).append(lease)

    def release(self, user_id: str) -> None:
        if self._local_only.get(user_id):
            self._local_only[user_id] -= 1
            self.fallback.release(user_id)
            return
        leases = self._leases.get(user_id)
        if not leases:
            return
        lease = leases.pop()
        if not leases:
            del self._leases[user_id]
        task = asyncio.get_running_loop().create_task(self._drop(user_id, lease))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drop(self, user_id: str, lease: str) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.redis.zrem(self._running_key(user_id), lease)

    def running(self, user_id: str) -> int:
        return len(self._leases.get(user_id, ())) + self._local_only.get(user_id, 0)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            expiry = time.time() + LEASE_S
            if not self._leases:
                continue
            try:
                pipe = self.redis.pipeline(transaction=False)
                for user_id, leases in self._leases.items():
                    # Not XX: after a Redis restart the running streams' leases come back with the next refresh.
                    pipe.zadd(self._running_key(user_id), dict.fromkeys(leases, expiry))
                    pipe.expire(self._running_key(user_id), int(LEASE_S) + 5)
                await pipe.execute()
                self.health.ok()
            except (RedisError, OSError) as exc:
                self.health.failed("stream limits", exc)
