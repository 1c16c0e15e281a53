"""Short-lived, single-use tickets for clients that cannot send an Authorization header.

Browsers' `EventSource` and `WebSocket` cannot set headers, and a JWT in a URL ends up in logs and history.
So the client trades its token (sent as a header to `POST /v1/tickets`) for an opaque ticket that works once,
for a minute, as `?ticket=` on the WebSocket and SSE resume URLs.

Stores keep only a hash of each ticket. The in-memory store serves one process; a shared store (e.g. over Redis)
slots in behind `TicketStore` so a ticket issued by one instance can be redeemed on another.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gateway.auth import Principal
from sessions.errors import fail

TICKET_PREFIX = "tk_"


# Every code a `TicketStore.redeem` can raise (`auth_unavailable`: a shared store that cannot be reached).
REDEEM_CODES = ("invalid_ticket", "ticket_used", "ticket_expired", "auth_unavailable")


def ticket_digest(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


def new_ticket() -> str:
    return TICKET_PREFIX + secrets.token_urlsafe(32)


class TicketStore(Protocol):
    async def issue(self, principal: Principal, ttl_s: float) -> str:
        """A new ticket for `principal`, valid for `ttl_s` seconds."""
        ...

    async def redeem(self, ticket: str) -> Principal:
        """The ticket's principal, exactly once. Raises (`unauthorized`) `invalid_ticket`, `ticket_used` or
        `ticket_expired`."""
        ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class _Entry:
    principal: Principal
    expires_at: float
    used: bool = False


class MemoryTicketStore:
    """Tickets in a dict keyed by their hash. Used and expired entries stay a little while as tombstones, so a
    replay is told `ticket_used` / `ticket_expired` rather than a vague `invalid_ticket`."""

    def __init__(
        self, *, max_entries: int = 100_000, tombstone_s: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._max = max_entries
        self._tombstone_s = tombstone_s
        self._clock = clock

    async def issue(self, principal: Principal, ttl_s: float) -> str:
        now = self._clock()
        self._prune(now)
        ticket = new_ticket()
        self._entries[ticket_digest(ticket)] = _Entry(principal, now + ttl_s)
        return ticket

    async def redeem(self, ticket: str) -> Principal:
        if not ticket.startswith(TICKET_PREFIX) or len(ticket) > 128:
            raise fail("invalid_ticket", "the ticket is not valid")
        entry = self._entries.get(ticket_digest(ticket))
        if entry is None:
            raise fail("invalid_ticket", "the ticket is not valid")
        if entry.used:
            raise fail("ticket_used", "the ticket was already used; get a new one")
        # Marked used before anything else can run: single use even under concurrent redeems.
        entry.used = True
        if self._clock() >= entry.expires_at:
            raise fail("ticket_expired", "the ticket has expired; get a new one")
        return entry.principal

    def knows(self, ticket: str) -> bool:
        """Whether this store issued the ticket (and still remembers it)."""
        return ticket_digest(ticket) in self._entries

    async def aclose(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _prune(self, now: float) -> None:
        # Entries are in issue order with one TTL per store in practice, so the oldest expire first.
        while self._entries:
            digest, oldest = next(iter(self._entries.items()))
            if oldest.expires_at + self._tombstone_s > now and len(self._entries) < self._max:
                break
            del self._entries[digest]
