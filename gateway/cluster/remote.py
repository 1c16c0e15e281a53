"""Streams owned by another instance, found through their Redis metadata and followed from their mirror."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.cluster.control import ClusterControl
from gateway.cluster.health import RedisHealth
from gateway.cluster.liveness import Liveness
from gateway.cluster.redis_log import LogKeys
from gateway.cluster.remote_log import RemoteLog
from sessions.errors import stream_not_found


class RemoteStream:
    """A `FollowedStream` whose events come from Redis and whose stop goes to the owning instance."""

    __slots__ = ("_client_id", "_log", "control", "id", "instance", "user_id")

    def __init__(
        self,
        stream_id: str,
        user_id: str,
        client_id: str | None,
        instance: str,
        log: RemoteLog,
        control: ClusterControl,
    ) -> None:
        self.id = stream_id
        self.user_id = user_id
        self._client_id = client_id
        self.instance = instance
        self._log = log
        self.control = control

    @property
    def client_id(self) -> str | None:
        return self._client_id

    @property
    def log(self) -> RemoteLog:
        return self._log

    def following(self) -> AbstractAsyncContextManager[None]:
        # The owner sees the watch and keeps the stream going past its resume window.
        return self.control.watching(self.id)

    async def stop(self) -> bool:
        try:
            if await self._log.ended():
                return False
        except (RedisError, OSError):
            raise stream_not_found() from None
        if not await self.control.request_cancel(self.instance, self.id, self.user_id):
            # The owner is gone (or Redis is): nothing here can stop it.
            raise stream_not_found()
        return True


class RedisRemoteStreams:
    """`RemoteStreams` over the stream metadata the log mirror writes (user, owning instance, client id)."""

    def __init__(
        self, redis: Redis, keys: LogKeys, control: ClusterControl, liveness: Liveness, health: RedisHealth
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.control = control
        self.liveness = liveness
        self.health = health

    async def locate(self, stream_id: str, user_id: str) -> RemoteStream | None:
        if not self.health.usable():
            return None
        try:
            meta: Any = await self.redis.hgetall(self.keys.meta(stream_id))  # redis-py's reply types are loose
        except (RedisError, OSError) as exc:
            self.health.failed("stream lookup", exc)
            return None
        self.health.ok()
        # Another user's stream looks exactly like a missing one.
        if not meta or meta.get(b"user", b"").decode() != user_id:
            return None
        client = meta.get(b"client", b"").decode() or None
        owner = meta.get(b"instance", b"").decode()
        log = RemoteLog(self.redis, self.keys, stream_id, owner_alive=lambda: self.liveness.alive(owner))
        return RemoteStream(stream_id, user_id, client, owner, log, self.control)

    async def is_watched(self, stream_id: str) -> bool:
        return await self.control.is_watched(stream_id)
