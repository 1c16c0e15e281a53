"""Redis pub/sub bus: every instance publishes its streams' spend and delivers everyone's to its own
subscribers, so one dashboard sees the streams of all instances.

Channels are `<prefix>:spend:<user_id>`; each instance holds one pattern subscription. Live spend is best
effort (the ledger is the record): while Redis is unreachable events are dropped and counted, and the
subscription is re-established with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.aio import cancel_and_wait
from gateway.bus.base import SpendBus

log = logging.getLogger("gateway.spend")


class RedisBus(SpendBus):
    def __init__(self, url: str, *, prefix: str = "gateway", flush_interval_s: float = 0.25) -> None:
        super().__init__(flush_interval_s=flush_interval_s)
        self._url = url
        self.channel_prefix = f"{prefix}:spend:"
        self._client: aioredis.Redis | None = None
        self._reader: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self.dropped = 0
        self._last_warning = -1e9

    def channel(self, user_id: str) -> str:
        return self.channel_prefix + user_id

    async def _open(self) -> None:
        self._client = aioredis.Redis.from_url(self._url, socket_connect_timeout=5, health_check_interval=30)
        self._reader = asyncio.create_task(self._read_forever(), name="spend bus redis reader")
        # Wait (briefly) for the subscription so events published right after start are not missed.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), 2)
        if not self._subscribed.is_set():
            log.warning("spend bus: redis subscription not ready; retrying in the background")

    async def _close(self) -> None:
        if self._reader is not None:
            await cancel_and_wait(self._reader)  # one cancel may be lost inside a Redis call
            self._reader = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _send(self, batch: list[tuple[str, bytes]]) -> None:
        if self._client is None:
            self.dropped += len(batch)
            return
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for user_id, data in batch:
                    pipe.publish(self.channel(user_id), data)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self.dropped += len(batch)
            now = asyncio.get_running_loop().time()
            if now - self._last_warning >= 30:  # one line per outage period, not one per flush
                self._last_warning = now
                log.warning(
                    "spend bus: publish failed, live spend dropped until Redis is back (%d so far): %s",
                    self.dropped,
                    type(exc).__name__,
                )

    async def _read_forever(self) -> None:
        assert self._client is not None
        backoff = 0.2
        warned = False
        start = len(self.channel_prefix)
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(self.channel_prefix + "*")
                self._subscribed.set()
                backoff, warned = 0.2, False
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if msg is None or msg.get("type") != "pmessage":
                        continue
                    channel = msg["channel"]
                    user_id = (channel.decode() if isinstance(channel, bytes) else str(channel))[start:]
                    data = msg["data"]
                    self.deliver(user_id, data if isinstance(data, bytes) else str(data).encode())
            except (RedisError, OSError) as exc:
                self._subscribed.clear()
                # One warning when the subscription is lost; the retries of the same outage stay quiet.
                (log.debug if warned else log.warning)(
                    "spend bus: redis subscription lost (%s); retrying in %.1fs", type(exc).__name__, backoff
                )
                warned = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
