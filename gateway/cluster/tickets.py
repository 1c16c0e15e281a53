"""Tickets in Redis, so a ticket issued by one instance can be redeemed on any other.

While Redis is unreachable, tickets are issued and redeemed in process (they then work on the issuing instance
only); a ticket kept in Redis cannot be checked until it is back (`auth_unavailable`, retryable).
"""

from __future__ import annotations

import json
import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.auth import Principal
from gateway.cluster.health import RedisHealth
from gateway.tickets import TICKET_PREFIX, MemoryTicketStore, new_ticket, ticket_digest
from sessions.errors import fail

# Marks the ticket used and returns what it held, atomically: two instances cannot both redeem it.
_REDEEM = """
local v = redis.call('GET', KEYS[1])
if not v then return false end
if string.sub(v, 1, 1) == 'U' then return 'U' end
redis.call('SET', KEYS[1], 'U' .. v, 'KEEPTTL')
return v
"""

TOMBSTONE_S = 300


class RedisTicketStore:
    def __init__(self, redis: Redis, prefix: str, *, health: RedisHealth | None = None) -> None:
        self.redis = redis
        self.prefix = prefix
        self.health = health or RedisHealth()
        self.fallback = MemoryTicketStore()
        self._redeem: Any = redis.register_script(_REDEEM)

    def _key(self, ticket: str) -> str:
        return f"{self.prefix}:ticket:{ticket_digest(ticket)}"

    async def issue(self, principal: Principal, ttl_s: float) -> str:
        if not self.health.usable():
            return await self.fallback.issue(principal, ttl_s)
        ticket = new_ticket()
        body = json.dumps(
            {
                "u": principal.user_id,
                "r": principal.role,
                "x": principal.expires_at,
                "e": principal.email,
                "until": time.time() + ttl_s,
            }
        )
        try:
            # Kept past its validity as a tombstone, so a replay hears "used"/"expired" rather than "invalid".
            await self.redis.set(self._key(ticket), "T" + body, ex=int(ttl_s) + TOMBSTONE_S, nx=True)
        except (RedisError, OSError) as exc:
            self.health.failed("tickets", exc)
            return await self.fallback.issue(principal, ttl_s)
        self.health.ok()
        return ticket

    async def redeem(self, ticket: str) -> Principal:
        if not ticket.startswith(TICKET_PREFIX) or len(ticket) > 128:
            raise fail("invalid_ticket", "the ticket is not valid")
        if self.fallback.knows(ticket):
            return await self.fallback.redeem(ticket)
        try:
            raw = await self._redeem(keys=[self._key(ticket)])
        except (RedisError, OSError) as exc:
            self.health.failed("tickets", exc)
            raise fail("auth_unavailable", "tickets cannot be checked right now; retry shortly") from None
        self.health.ok()
        if raw is None:
            raise fail("invalid_ticket", "the ticket is not valid")
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        if text == "U":
            raise fail("ticket_used", "the ticket was already used; get a new one")
        body = json.loads(text[1:])
        if time.time() >= body["until"]:
            raise fail("ticket_expired", "the ticket has expired; get a new one")
        return Principal(body["u"], body["r"], body["x"], body["e"])

    async def aclose(self) -> None:
        await self.fallback.aclose()
