"""A circuit breaker whose state every instance shares through Redis.

Outcomes are counted in a hash per provider/model, one field pair per slice of the window (`<slice>:n`, `<slice>:f`),
so every instance adds to the same failure rate; an open circuit is a key holding the time it opened; the half-open
probe is a key set with NX, so one instance at a time probes. One Lua call per finished attempt counts the outcome
and decides. If Redis is unreachable the in-process breaker decides, and the stream goes on.
"""

from __future__ import annotations

import math
import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.cluster.health import RedisHealth
from providers.breaker import BUCKETS, MemoryBreaker, Threshold

# KEYS: outcomes hash, open marker, probe marker.
# ARGV: now, failed (1/0), slice length, slices, min requests, failure rate, open marker ttl, hash ttl.
# Returns 1 when this outcome opened the circuit, 2 when a failed probe reopened it, 3 when a probe closed it.
_OUTCOME = """
local now = tonumber(ARGV[1])
local failed = ARGV[2] == '1'
if redis.call('EXISTS', KEYS[3]) == 1 then
  if failed then
    redis.call('SET', KEYS[2], now, 'EX', ARGV[7])
    redis.call('DEL', KEYS[3])
    return 2
  end
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
  return 3
end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local slice = math.floor(now / tonumber(ARGV[3]))
local oldest = slice - tonumber(ARGV[4]) + 1
redis.call('HINCRBY', KEYS[1], slice .. ':n', 1)
if failed then redis.call('HINCRBY', KEYS[1], slice .. ':f', 1) end
redis.call('EXPIRE', KEYS[1], ARGV[8])
if not failed then return 0 end
local total, fails = 0, 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local at, kind = string.match(fields[i], '^(%-?%d+):(%a)$')
  if tonumber(at) < oldest then
    redis.call('HDEL', KEYS[1], fields[i])
  elseif kind == 'n' then
    total = total + tonumber(fields[i + 1])
  else
    fails = fails + tonumber(fields[i + 1])
  end
end
if total >= tonumber(ARGV[5]) and fails >= math.ceil(tonumber(ARGV[6]) * total - 1e-9) then
  redis.call('SET', KEYS[2], now, 'EX', ARGV[7])
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
        min_requests: int = 10,
        failure_rate: float = 0.5,
        window_s: float = 30.0,
        cooldown_s: float = 30.0,
        health: RedisHealth | None = None,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.threshold = Threshold(min_requests, failure_rate, window_s)
        self.window_s = window_s
        self.cooldown_s = cooldown_s
        self.fallback = MemoryBreaker(min_requests, failure_rate, window_s, cooldown_s)
        self.health = health or RedisHealth()
        self._outcome: Any = redis.register_script(_OUTCOME)

    def _keys(self, provider: str, model: str) -> tuple[str, str, str]:
        base = f"{self.prefix}:brk:{provider}:{model}"
        return f"{base}:window", f"{base}:open", f"{base}:probe"

    def _open_ttl(self) -> int:
        # The open marker outlives the cool-down so an expired key never reads as "closed" mid-probe.
        return int(self.cooldown_s * 10) + 60

    async def acquire(self, provider: str, model: str) -> bool:
        if not self.health.usable():
            return await self.fallback.acquire(provider, model)
        _window, opened, probe = self._keys(provider, model)
        try:
            raw = await self.redis.get(opened)
            if raw is None:
                allowed = True
            elif time.time() - float(raw) < self.cooldown_s:
                allowed = False
            else:
                # Half-open: one probe at a time, across instances.
                allowed = bool(await self.redis.set(probe, "1", nx=True, ex=max(1, math.ceil(self.cooldown_s))))
        except (RedisError, OSError) as exc:
            self.health.failed("circuit breaker", exc)
            return await self.fallback.acquire(provider, model)
        self.health.ok()
        return allowed

    async def success(self, provider: str, model: str) -> None:
        await self._report(provider, model, failed=False)

    async def failure(self, provider: str, model: str) -> None:
        await self._report(provider, model, failed=True)

    async def _report(self, provider: str, model: str, *, failed: bool) -> None:
        local = self.fallback.failure if failed else self.fallback.success
        if not self.health.usable():
            await local(provider, model)
            return
        t = self.threshold
        try:
            await self._outcome(
                keys=list(self._keys(provider, model)),
                args=[
                    time.time(),
                    int(failed),
                    t.bucket_s,
                    BUCKETS,
                    t.min_requests,
                    t.failure_rate,
                    self._open_ttl(),
                    math.ceil(self.window_s) + 1,
                ],
            )
        except (RedisError, OSError) as exc:
            self.health.failed("circuit breaker", exc)
            await local(provider, model)

    async def release(self, provider: str, model: str) -> None:
        if not self.health.usable():
            await self.fallback.release(provider, model)
            return
        _window, _opened, probe = self._keys(provider, model)
        try:
            await self.redis.delete(probe)
        except (RedisError, OSError) as exc:
            self.health.failed("circuit breaker", exc)
            await self.fallback.release(provider, model)
