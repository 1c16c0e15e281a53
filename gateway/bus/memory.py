"""In-process bus: one gateway instance, subscribers in the same process."""

from __future__ import annotations

from gateway.bus.base import SpendBus


class MemoryBus(SpendBus):
    async def _send(self, batch: list[tuple[str, bytes]]) -> None:
        for user_id, data in batch:
            self.deliver(user_id, data)
