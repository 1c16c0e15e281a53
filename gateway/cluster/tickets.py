"""Tickets in Redis, so a ticket issued by one instance can be redeemed on any other."""

from __future__ import annotations

import json
import time
from typing import Any

from redis.asyncio import Redis

from gateway.auth import AuthError, Principal
from gateway.tickets import TICKET_PREFIX, new_ticket, ticket_digest

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
    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._redeem: Any = redis.register_script(_REDEEM)

    def _key(self, ticket: str) -> str:
        return f"{self.prefix}:ticket:{ticket_digest(ticket)}"

    async def issue(self, principal: Principal, ttl_s: float) -> str:
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
        # Kept past its validity as a tombstone, so a replay hears "used"/"expired" rather than "invalid".
        await self.redis.set(self._key(ticket), "T" + body, ex=int(ttl_s) + TOMBSTONE_S, nx=True)
        return ticket

    async def redeem(self, ticket: str) -> Principal:
        if not ticket.startswith(TICKET_PREFIX) or len(ticket) > 128:
            raise AuthError("invalid_ticket", "the ticket is not valid")
        raw = await self._redeem(keys=[self._key(ticket)])
        if raw is None:
            raise AuthError("invalid_ticket", "the ticket is not valid")
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        if text == "U":
            raise AuthError("ticket_used", "the ticket was already used; get a new one")
        body = json.loads(text[1:])
        if time.time() >= body["until"]:
            raise AuthError("ticket_expired", "the ticket has expired; get a new one")
        return Principal(body["u"], body["r"], body["x"], body["e"])

    async def aclose(self) -> None:
        return None
