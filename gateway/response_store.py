"""Responses the gateway keeps, so a later request can build on one (`previous_response_id`, `item_reference`)
and `GET`/`DELETE /v1/responses/{id}` find it.

A kept response is the `response` object as it ended plus the input items it was asked (references resolved),
owned by one user: another user's id reads as unknown. Kept for `GATEWAY_RESPONSES_TTL_S`. In memory (bounded
by `GATEWAY_RESPONSES_MEMORY_BYTES`, oldest first), or in Redis with `REDIS_URL` so every instance finds them
(`gateway/cluster/responses.py`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

Json = dict[str, Any]


@dataclass(slots=True, frozen=True)
class Kept:
    user_id: str
    response: Json
    input_items: list[Json]

    def to_bytes(self) -> bytes:
        return orjson.dumps({"u": self.user_id, "r": self.response, "i": self.input_items})

    @classmethod
    def from_bytes(cls, raw: bytes) -> Kept:
        d = orjson.loads(raw)
        return cls(str(d["u"]), dict(d["r"]), list(d["i"]))

    def item(self, item_id: str) -> Json | None:
        """One of its output items, by id."""
        for item in self.response.get("output", ()):
            if item.get("id") == item_id:
                return dict(item)
        return None


class ResponseStore(Protocol):
    async def put(self, response_id: str, kept: Kept) -> None: ...

    async def get(self, response_id: str, user_id: str) -> Kept | None:
        """The response if `user_id` owns it and it is still kept."""
        ...

    async def delete(self, response_id: str, user_id: str) -> bool: ...


class MemoryResponseStore:
    def __init__(self, *, ttl_s: float, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self._clock = clock
        self._kept: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._bytes = 0

    async def put(self, response_id: str, kept: Kept) -> None:
        raw = kept.to_bytes()
        self._drop(response_id)
        if len(raw) > self.max_bytes:
            return
        self._kept[response_id] = (self._clock() + self.ttl_s, raw)
        self._bytes += len(raw)
        while self._bytes > self.max_bytes:
            self._drop(next(iter(self._kept)))

    async def get(self, response_id: str, user_id: str) -> Kept | None:
        found = self._kept.get(response_id)
        if found is None:
            return None
        if found[0] <= self._clock():
            self._drop(response_id)
            return None
        kept = Kept.from_bytes(found[1])
        return kept if kept.user_id == user_id else None

    async def delete(self, response_id: str, user_id: str) -> bool:
        if await self.get(response_id, user_id) is None:
            return False
        self._drop(response_id)
        return True

    def _drop(self, response_id: str) -> None:
        old = self._kept.pop(response_id, None)
        if old is not None:
            self._bytes -= len(old[1])
