"""Kept Responses API responses in Redis, so a response made on one instance can be built on from any other.

While Redis is unreachable, responses are kept in process (found on this instance only) and looked up there
too; a response kept in Redis cannot be read until it is back (`store_unavailable`, retryable).
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.cluster.health import RedisHealth
from gateway.response_store import Kept, MemoryResponseStore
from sessions.errors import fail


class RedisResponseStore:
    def __init__(self, redis: Redis, prefix: str, *, ttl_s: float, fallback: MemoryResponseStore, health: RedisHealth):
        self.redis = redis
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.fallback = fallback
        self.health = health

    def _key(self, response_id: str) -> str:
        return f"{self.prefix}:response:{response_id}"

    async def put(self, response_id: str, kept: Kept) -> None:
        if self.health.usable():
            try:
                await self.redis.set(self._key(response_id), kept.to_bytes(), ex=max(1, int(self.ttl_s)))
            except (RedisError, OSError) as exc:
                self.health.failed("responses", exc)
            else:
                self.health.ok()
                return
        await self.fallback.put(response_id, kept)

    async def get(self, response_id: str, user_id: str) -> Kept | None:
        local = await self.fallback.get(response_id, user_id)
        if local is not None:
            return local
        try:
            raw = await self.redis.get(self._key(response_id))
        except (RedisError, OSError) as exc:
            self.health.failed("responses", exc)
            raise fail("store_unavailable", "kept responses cannot be read right now; try again shortly") from None
        self.health.ok()
        if raw is None:
            return None
        kept = Kept.from_bytes(raw if isinstance(raw, bytes) else str(raw).encode())
        return kept if kept.user_id == user_id else None

    async def delete(self, response_id: str, user_id: str) -> bool:
        if await self.fallback.delete(response_id, user_id):
            return True
        if await self.get(response_id, user_id) is None:
            return False
        try:
            await self.redis.delete(self._key(response_id))
        except (RedisError, OSError) as exc:
            self.health.failed("responses", exc)
            raise fail("store_unavailable", "kept responses cannot be changed right now; try again shortly") from None
        return True
