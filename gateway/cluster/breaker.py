"""A circuit breaker whose state every instance shares through Redis.

Failures are a sorted set of times per provider/model; an open circuit is a key holding the time it opened;
the half-open probe is a key set with NX, so one instance at a time probes. If Redis is unreachable the
in-process breaker decides, and the stream goes on.
"""

from __future__ import annotations

import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.cluster.health import RedisHealth
from providers.breaker import MemoryBreaker

_FAILURE = """
local now = tonumber(ARGV[1])
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('SET', KEYS[2], now, 'EX', ARGV[5])
  redis.call('DEL', KEYS[3])
  return 2
end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3])) + 1)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  redis.call('SET', KEYS[2], now, 'EX', ARGV[5])
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


class RedisBreaker:
    def __init__(
        self,
        redis: Redis,
        prefix: str,
        *,
        failures: int = 5,
        window_s: float = 30.0,
        cooldown_s: float = 30.0,
        health: RedisHealth | None = None,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.threshold = failures
        self.window_s = window_s
        self.cooldown_s = cooldown_s
        self.fallback = MemoryBreaker(failures, window_s, cooldown_s)
        self.health = health or RedisHealth()
        self._failure: Any = redis.register_script(_FAILURE)
        self._seq = 0

    def _keys(self, provider: str, model: str) -> tuple[str, str, str]:
        base = f"{self.prefix}:brk:{provider}:{model}"
        return f"{base}:fails", f"{base}:open", f"{base}:probe"

    def _open_ttl(self) -> int:
        # The open marker outlives the cool-down so an expired key never reads as "closed" mid-probe.
        return int(self.cooldown_s * 10) + 60

    async def acquire(self, provider: str, model: str) -> bool:
        if not self.health.usable():
            return await self.fallback.acquire(provider, model)
        _fails, opened, probe = self._keys(provider, model)
        try:
            raw = await self.redis.get(opened)
            if raw is None:
                allowed = True
            elif time.time() - float(raw) < self.cooldown_s:
                allowed = False
            else:
                # Half-open: one probe at a time, across instances.
                allowed = bool(await self.redis.set(probe, "1", nx=True, ex=max(1, int(self.cooldown_s))))
        except (RedisError, OSError) as exc:
            self.health.failed("circuit breaker", exc)
            return await self.fallback.acquire(provider, model)
        self.health.ok()
        return allowed

    async def success(self, provider: str, model: str) -> None:
        if not self.health.usable():
            await self.fallback.success(provider, model)
            return
        fails, opened, probe = self._keys(provider, model)
        try:
            if await self.redis.exists(opened):
                await self.redis.delete(fails, opened, probe)
        except (RedisError, OSError) as exc:
            self.health.failed("circuit breaker", exc)
            await self.fallback.success(provider, model)

    async def failure(self, provider: str, model: str) -> None:
        if not self.health.usable():
            await self.fallback.failure(provider, model)
            return
        fails, opened, probe = self._keys(provider, model)
        self._seq += 1
        try:
            await self._failure(
                keys=[fails, opened, probe],
                args=[time.time(), f"{time.time()}:{self._seq}", self.window_s, self.threshold, self._open_ttl()],
            )
        except (RedisError, OSError) as exc:
            self.health.failed("circuit breaker", exc)
            await self.fallback.failure(provider, model)

    async def release(self, provider: str, model: str) -> None:
        if not self.health.usable():
            await self.fallback.release(provider, model)
            return
        _fails, _opened, probe = self._keys(provider, model)
        try:
            await self.redis.delete(probe)
        except (RedisError, OSError) as exc:
            self.health.failed("circuit breaker", exc)
            await self.fallback.release(provider, model)
