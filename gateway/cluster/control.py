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

log = logging.getLogger("gateway.cluster")

WATCH_TTL_S = 6
WATCH_REFRESH_S = 2.0


class ClusterControl:
    def __init__(self, redis: Redis, prefix: str, instance_id: str, on_cancel: Callable[[str, str], None]) -> None:
        self.redis = redis
        self.prefix = prefix
        self.instance_id = instance_id
        self._on_cancel = on_cancel
        self._task: asyncio.Task[None] | None = None

    def channel(self, instance_id: str) -> str:
        return f"{self.prefix}:ctl:{instance_id}"

    def watch_key(self, stream_id: str) -> str:
        return f"{self.prefix}:watch:{stream_id}"

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="cluster control")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _listen(self) -> None:
        while True:
            try:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as ps:
                    await ps.subscribe(self.channel(self.instance_id))
                    async for msg in ps.listen():
                        self._handle(msg)
            except (RedisError, OSError) as exc:
                log.warning("cluster control channel lost; retrying", extra={"error": str(exc)})
                await asyncio.sleep(1.0)

    def _handle(self, msg: dict[str, Any]) -> None:
        try:
            cmd = json.loads(msg["data"])
        except (ValueError, TypeError):
            log.warning("malformed cluster command ignored")
            return
        if cmd.get("op") == "cancel" and isinstance(cmd.get("stream_id"), str) and isinstance(cmd.get("user_id"), str):
            self._on_cancel(cmd["stream_id"], cmd["user_id"])

    async def request_cancel(self, instance_id: str, stream_id: str, user_id: str) -> bool:
        """Ask the owning instance to stop a stream. False when Redis is unreachable."""
        try:
            payload = json.dumps({"op": "cancel", "stream_id": stream_id, "user_id": user_id})
            await self.redis.publish(self.channel(instance_id), payload)
        except (RedisError, OSError):
            return False
        return True

    @asynccontextmanager
    async def watching(self, stream_id: str) -> AsyncIterator[None]:
        """While inside, the stream's owner sees a remote subscriber."""

        async def refresh() -> None:
            while True:
                with contextlib.suppress(RedisError, OSError):
                    await self.redis.set(self.watch_key(stream_id), self.instance_id, ex=WATCH_TTL_S)
                await asyncio.sleep(WATCH_REFRESH_S)

        task = asyncio.create_task(refresh())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(RedisError, OSError):
                await self.redis.delete(self.watch_key(stream_id))

    async def is_watched(self, stream_id: str) -> bool:
        try:
            return bool(await self.redis.exists(self.watch_key(stream_id)))
        except (RedisError, OSError):
            return False
