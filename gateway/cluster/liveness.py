"""Owner liveness: whether the instance that runs a stream is still there, for followers on other instances.

Each instance keeps one short-lived key, `<prefix>:alive:<instance>`, refreshed by one task (not one per
stream). A follower that sees no new events asks about it once a second; when the mark stays gone, the owner
died (crashed, killed) without ending its streams, and the follow ends with `stream_owner_lost` instead of
waiting in silence for events that will never come.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.aio import cancel_and_wait
from gateway.cluster.health import RedisHealth

log = logging.getLogger("gateway.cluster")

ALIVE_TTL_S = 3  # the mark outlives two missed refreshes
ALIVE_REFRESH_S = 1.0
# A follower gives up on the owner once its mark has been missing this long: longer than a refresh, so a mark
# that Redis lost (restarted empty) and the owner writes again within a second is not taken for a death.
OWNER_LOST_S = 2.0


class Liveness:
    def __init__(self, redis: Redis, prefix: str, instance_id: str, health: RedisHealth) -> None:
        self.redis = redis
        self.prefix = prefix
        self.instance_id = instance_id
        self.health = health
        self._task: asyncio.Task[None] | None = None

    def key(self, instance_id: str) -> str:
        return f"{self.prefix}:alive:{instance_id}"

    def start(self) -> None:
        self._task = asyncio.create_task(self._refresh(), name="liveness mark")

    async def aclose(self) -> None:
        """After this instance's streams ended (their ends are in the shared logs): the mark goes at once."""
        if self._task is not None:
            await cancel_and_wait(self._task)
        with contextlib.suppress(RedisError, OSError):
            await self.redis.delete(self.key(self.instance_id))

    async def _refresh(self) -> None:
        key = self.key(self.instance_id)
        while True:
            try:
                await self.redis.set(key, "1", ex=ALIVE_TTL_S)
            except (RedisError, OSError) as exc:
                self.health.failed("liveness mark", exc)
            await asyncio.sleep(ALIVE_REFRESH_S)

    async def alive(self, instance_id: str) -> bool:
        """Whether `instance_id`'s mark is there. True when Redis cannot say: an outage is not a death."""
        try:
            return bool(await self.redis.exists(self.key(instance_id)))
        except (RedisError, OSError):
            return True
