"""Commands between instances about streams: cancel a stream that lives elsewhere, and say "someone is
watching this stream" so its owner does not end it after the resume window while a client follows it remotely.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.aio import cancel_and_wait
from gateway.cluster.health import RedisHealth

log = logging.getLogger("gateway.cluster")

WATCH_TTL_S = 6
WATCH_REFRESH_S = 2.0


class ClusterControl:
    def __init__(
        self,
        redis: Redis,
        prefix: str,
        instance_id: str,
        on_cancel: Callable[[str, str], object],
        *,
        health: RedisHealth | None = None,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.instance_id = instance_id
        self.on_cancel = on_cancel  # (stream id, user id): stop that stream here
        self.health = health or RedisHealth(instance_id=instance_id)
        self._task: asyncio.Task[None] | None = None
        self._cleanups: set[asyncio.Task[None]] = set()

    def channel(self, instance_id: str) -> str:
        return f"{self.prefix}:ctl:{instance_id}"

    def watch_key(self, stream_id: str) -> str:
        return f"{self.prefix}:watch:{stream_id}"

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="cluster control")

    async def aclose(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
        if self._cleanups:
            await asyncio.wait(self._cleanups)

    async def _listen(self) -> None:
        backoff = 0.2
        while True:
            try:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as ps:
                    await ps.subscribe(self.channel(self.instance_id))
                    self.health.ok()
                    backoff = 0.2
                    async for msg in ps.listen():
                        self._handle(msg)
            except (RedisError, OSError) as exc:
                # One warning per outage comes from the shared health; the retries stay quiet.
                self.health.failed("control channel", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    def _handle(self, msg: dict[str, Any]) -> None:
        try:
            cmd = json.loads(msg["data"])
        except (ValueError, TypeError):
            log.warning("malformed cluster command ignored")
            return
        if cmd.get("op") != "cancel":
            return
        if isinstance(cmd.get("stream_id"), str) and isinstance(cmd.get("user_id"), str):
            self.on_cancel(cmd["stream_id"], cmd["user_id"])

    async def request_cancel(self, instance_id: str, stream_id: str, user_id: str) -> bool:
        """Ask the owning instance to stop a stream. False when Redis is unreachable or nobody listens there
        (the owner is gone)."""
        try:
            payload = json.dumps({"op": "cancel", "stream_id": stream_id, "user_id": user_id})
            receivers = await self.redis.publish(self.channel(instance_id), payload)
        except (RedisError, OSError) as exc:
            self.health.failed("control channel", exc)
            return False
        return bool(receivers)

    @asynccontextmanager
    async def watching(self, stream_id: str) -> AsyncIterator[None]:
        """While inside, the stream's owner sees a remote subscriber."""

        async def refresh() -> None:
            while True:
                with contextlib.suppress(RedisError, OSError):
                    await self.redis.set(self.watch_key(stream_id), self.instance_id, ex=WATCH_TTL_S)
                await asyncio.sleep(WATCH_REFRESH_S)

        async def unwatch(refresher: asyncio.Task[None]) -> None:
            await cancel_and_wait(refresher)
            with contextlib.suppress(RedisError, OSError):
                await self.redis.delete(self.watch_key(stream_id))

        task = asyncio.create_task(refresh())
        try:
            yield
        finally:
            # Shielded: a follower cancelled while leaving must not leave the key refreshed forever.
            cleanup = asyncio.create_task(unwatch(task))
            self._cleanups.add(cleanup)
            cleanup.add_done_callback(self._cleanups.discard)
            await asyncio.shield(cleanup)

    async def is_watched(self, stream_id: str) -> bool:
        if not self.health.usable():
            return False
        try:
            return bool(await self.redis.exists(self.watch_key(stream_id)))
        except (RedisError, OSError) as exc:
            self.health.failed("control channel", exc)
            return False
