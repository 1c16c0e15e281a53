"""Stream logs mirrored to the real Redis: a reader elsewhere sees exactly the events, in order, then the end."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.cluster.redis_log import LogKeys, RedisLogMirror
from gateway.cluster.remote_log import RemoteLog
from sessions.errors import GatewayError
from sessions.events import Delta
from tests.conftest import service_unavailable
from tests.support.proxy import TcpProxy
from tests.support.redis import REDIS_URL, redis_address, redis_url_through


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except (RedisError, OSError):
        service_unavailable("Redis")
    prefix = f"gwtest-{secrets.token_hex(4)}"
    client.test_prefix = prefix  # type: ignore[attr-defined]
    yield client
    keys = [k async for k in client.scan_iter(f"{prefix}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_remote_reader_gets_every_event_then_end(redis: Redis) -> None:
    keys = LogKeys(redis.test_prefix)  # type: ignore[attr-defined]
    mirror = RedisLogMirror(redis, keys, instance_id="a", max_events=10_000, ttl_s=60, flush_interval_s=0.005)
    mirror.start()
    local = mirror.log_for("st_1", "user-1", 10_000, 1 << 20)
    for i in range(50):
        local.append(Delta(str(i)), b'{"text":"%d"}' % i)
    remote = RemoteLog(redis, keys, "st_1", block_ms=200)

    async def read(after: int) -> list[int]:
        seqs: list[int] = []
        async for batch in remote.follow(after):
            seqs += [e.seq for e in batch]
        return seqs

    reader = asyncio.create_task(read(10))
    await asyncio.sleep(0.05)
    for i in range(50, 80):
        local.append(Delta(str(i)), b'{"text":"%d"}' % i)
    local.close()
    seqs = await asyncio.wait_for(reader, 5)
    assert seqs == list(range(11, 81))
    assert await redis.hget(keys.meta("st_1"), "user") == b"user-1"
    assert 0 < await redis.ttl(keys.log("st_1")) <= 60
    await mirror.aclose()


async def test_trimmed_log_refuses_an_old_cursor(redis: Redis) -> None:
    keys = LogKeys(redis.test_prefix)  # type: ignore[attr-defined]
    mirror = RedisLogMirror(redis, keys, instance_id="a", max_events=10, ttl_s=60)
    log = mirror.log_for("st_2", "u", 10_000, 1 << 20)
    for i in range(500):
        log.append(Delta(str(i)), b"%d" % i)
    await mirror.flush()
    remote = RemoteLog(redis, keys, "st_2")
    with pytest.raises(GatewayError) as too_old:
        await remote.check_cursor(1)
    assert too_old.value.code == "resume_too_old"
    await remote.check_cursor(499)
    await mirror.aclose()


async def test_redis_down_keeps_local_streams_going() -> None:
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    mirror = RedisLogMirror(dead, LogKeys("x"), instance_id="a", max_events=100, ttl_s=60, flush_interval_s=0.001)
    mirror.start()
    log = mirror.log_for("st_3", "u", 100, 1 << 20)
    for i in range(20):
        log.append(Delta(str(i)), b"%d" % i)
        await asyncio.sleep(0.002)
    log.close()
    seen = [e.seq async for batch in log.follow(0) for e in batch]
    assert seen == list(range(1, 21))
    await asyncio.sleep(0.3)
    assert mirror.healthy is False
    await mirror.aclose()
    await dead.aclose()


async def test_a_vanished_shared_copy_is_rewritten_from_memory(redis: Redis) -> None:
    # As after a Redis restart: the key is gone while the stream runs; a reader still gets every event once.
    keys = LogKeys(redis.test_prefix)  # type: ignore[attr-defined]
    mirror = RedisLogMirror(redis, keys, instance_id="a", max_events=10_000, ttl_s=60, flush_interval_s=0.005)
    mirror.start()
    local = mirror.log_for("st_4", "user-4", 10_000, 1 << 20, client_id="c4")
    for i in range(30):
        local.append(Delta(str(i)), b'{"text":"%d"}' % i)
    await asyncio.sleep(0.05)
    remote = RemoteLog(redis, keys, "st_4", block_ms=200)

    async def read(after: int) -> list[int]:
        return [e.seq async for batch in remote.follow(after) for e in batch]

    reader = asyncio.create_task(read(5))
    await asyncio.sleep(0.05)
    await redis.delete(keys.log("st_4"), keys.meta("st_4"))
    for i in range(30, 60):
        local.append(Delta(str(i)), b'{"text":"%d"}' % i)
        await asyncio.sleep(0.001)
    local.close()
    assert await asyncio.wait_for(reader, 5) == list(range(6, 61))
    assert mirror.rewrites >= 1
    meta = await redis.hgetall(keys.meta("st_4"))
    assert meta[b"user"] == b"user-4" and meta[b"client"] == b"c4" and meta[b"instance"] == b"a"
    await mirror.aclose()


async def test_a_copy_lost_in_an_outage_is_rewritten_and_counted_whoever_reloads_the_script(redis: Redis) -> None:
    # As when Redis restarts empty under two instances: this one's writes fail while it is away, and by the time
    # it is back the other instance has already loaded the write script again. The rewrite still happens, and
    # is counted, as the several-instances test checks.
    keys = LogKeys(redis.test_prefix)  # type: ignore[attr-defined]
    proxy = TcpProxy(*redis_address())
    port = await proxy.start()
    via = Redis.from_url(redis_url_through(port), socket_timeout=2)
    mirror = RedisLogMirror(via, keys, instance_id="a", max_events=10_000, ttl_s=60, flush_interval_s=0.005)
    try:
        local = mirror.log_for("st_6", "user-6", 10_000, 1 << 20)
        local.append(Delta("0"), b'{"text":"0"}')
        await mirror.flush()
        await proxy.set_down()
        local.append(Delta("1"), b'{"text":"1"}')
        with pytest.raises((RedisError, OSError)):
            await mirror.flush()
        await redis.delete(keys.log("st_6"), keys.meta("st_6"))  # what the restart lost
        proxy.set_up()
        local.append(Delta("2"), b'{"text":"2"}')
        await mirror.flush()
        assert mirror.rewrites == 1
        assert [e[0] for e in await redis.xrange(keys.log("st_6"))] == [b"1-0", b"2-0", b"3-0"]
    finally:
        await via.aclose()
        await proxy.stop()


async def test_a_hole_in_the_shared_copy_is_reported_not_skipped(redis: Redis) -> None:
    keys = LogKeys(redis.test_prefix)  # type: ignore[attr-defined]
    for seq in (1, 2, 3, 6, 7):
        await redis.xadd(keys.log("st_5"), {"n": "delta", "d": b"%d" % seq}, id=f"{seq}-0")
    remote = RemoteLog(redis, keys, "st_5", block_ms=100)
    seen: list[int] = []
    with pytest.raises(GatewayError) as hole:
        async for batch in remote.follow(0):
            seen += [e.seq for e in batch]
    assert seen == [1, 2, 3] and hole.value.code == "resume_too_old"
    with pytest.raises(GatewayError) as after:
        async for _batch in RemoteLog(redis, keys, "st_5", block_ms=100).follow(3):
            raise AssertionError("events after a hole were delivered")
    assert after.value.code == "resume_too_old"
