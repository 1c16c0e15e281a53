"""Live spend: a tiny publish/subscribe bus, in-process by default and Redis pub/sub with REDIS_URL."""

from __future__ import annotations

from gateway.bus.base import ALL, SpendBus, Subscription
from gateway.bus.memory import MemoryBus


def build_bus(redis_url: str | None, prefix: str = "gateway") -> SpendBus:
    if redis_url:
        from gateway.bus.redis import RedisBus

        return RedisBus(redis_url, prefix=prefix)
    return MemoryBus()


__all__ = ["ALL", "MemoryBus", "SpendBus", "Subscription", "build_bus"]
