"""Everything an instance shares with the others through Redis, built from settings when REDIS_URL is set."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from gateway.cluster.breaker import RedisBreaker
from gateway.cluster.control import ClusterControl
from gateway.cluster.health import RedisHealth
from gateway.cluster.limits import RedisUserLimiter
from gateway.cluster.liveness import Liveness
from gateway.cluster.redis_log import LogKeys, MirroredLog, RedisLogMirror
from gateway.cluster.remote import RedisRemoteStreams
from gateway.cluster.responses import RedisResponseStore
from gateway.cluster.tickets import RedisTicketStore
from gateway.settings import Settings
from gateway.wiring import memory_responses

# A finished stream's shared log outlives the owner's resume window by this much, so a client that resumes
# elsewhere at the very end of the window still reads the tail.
LOG_TTL_MARGIN_S = 60


def redis_client(url: str) -> Redis:
    # Fail fast and let the in-process fallbacks take over: one quick retry (a pooled connection that died
    # with a Redis restart), short timeouts. The socket timeout stays above RemoteLog's one-second XREAD block.
    return Redis.from_url(
        url,
        socket_connect_timeout=1.0,
        socket_timeout=5.0,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), 1),
    )


@dataclass(slots=True, frozen=True)
class Cluster:
    redis: Redis
    instance_id: str
    health: RedisHealth
    mirror: RedisLogMirror
    control: ClusterControl
    remote: RedisRemoteStreams
    tickets: RedisTicketStore
    responses: RedisResponseStore
    limiter: RedisUserLimiter
    breaker: RedisBreaker
    liveness: Liveness
    log_max_events: int
    log_max_bytes: int

    def log_for(self, stream_id: str, user_id: str, client_id: str | None) -> MirroredLog:
        return self.mirror.log_for(stream_id, user_id, self.log_max_events, self.log_max_bytes, client_id)

    def start(self) -> None:
        self.liveness.start()
        self.mirror.start()
        self.control.start()
        self.limiter.start()

    async def aclose(self) -> None:
        """After the sessions drained: the last events and end markers are written, the liveness mark goes
        (followers elsewhere have read the ends by then), then the client closes."""
        await asyncio.gather(self.control.aclose(), self.limiter.aclose())
        await self.mirror.aclose()
        await self.liveness.aclose()
        await self.redis.aclose()


def build_cluster(settings: Settings, redis_url: str, on_cancel: Callable[[str, str], object]) -> Cluster:
    """`on_cancel(stream_id, user_id)` stops a stream of this instance when another instance asks."""
    redis = redis_client(redis_url)
    prefix = settings.gateway_redis_prefix
    instance_id = secrets.token_hex(6)  # per process: streams are owned by a process, not a host
    health = RedisHealth(instance_id=instance_id)
    keys = LogKeys(prefix)
    control = ClusterControl(redis, prefix, instance_id, on_cancel, health=health)
    mirror = RedisLogMirror(
        redis,
        keys,
        instance_id=instance_id,
        max_events=settings.gateway_stream_log_max_events,
        ttl_s=int(settings.gateway_resume_window_s) + LOG_TTL_MARGIN_S,
        health=health,
    )
    liveness = Liveness(redis, prefix, instance_id, health)
    return Cluster(
        redis=redis,
        instance_id=instance_id,
        health=health,
        mirror=mirror,
        control=control,
        remote=RedisRemoteStreams(redis, keys, control, liveness, health),
        tickets=RedisTicketStore(redis, prefix, health=health),
        responses=RedisResponseStore(
            redis,
            prefix,
            ttl_s=settings.gateway_responses_ttl_s,
            fallback=memory_responses(settings),
            health=health,
        ),
        limiter=RedisUserLimiter(
            redis,
            prefix,
            settings.gateway_max_concurrent_streams,
            settings.gateway_starts_per_minute,
            health=health,
        ),
        breaker=RedisBreaker(
            redis,
            prefix,
            min_requests=settings.gateway_breaker_min_requests,
            failure_rate=settings.gateway_breaker_failure_rate,
            window_s=settings.gateway_breaker_window_s,
            cooldown_s=settings.gateway_breaker_cooldown_s,
            health=health,
        ),
        liveness=liveness,
        log_max_events=settings.gateway_stream_log_max_events,
        log_max_bytes=settings.gateway_stream_log_max_bytes,
    )
