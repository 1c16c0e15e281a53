"""Tickets, limits and circuit breakers shared through the real Redis, as two instances would see them."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from redis.asyncio import Redis

from gateway.auth import Principal
from gateway.cluster.breaker import RedisBreaker
from gateway.cluster.health import RedisHealth
from gateway.cluster.limits import RedisUserLimiter
from gateway.cluster.tickets import RedisTicketStore
from gateway.errors import status_of
from sessions.errors import GatewayError
from tests.support.redis import redis_prefix

ALICE = Principal("00000000-0000-4000-8000-00000000000a", "authenticated", time.time() + 3600, "a@x")


async def test_ticket_issued_on_one_instance_redeems_once_on_another() -> None:
    async with redis_prefix() as (redis, prefix):
        a, b = RedisTicketStore(redis, prefix), RedisTicketStore(redis, prefix)
        ticket = await a.issue(ALICE, 60)
        results = await asyncio.gather(b.redeem(ticket), a.redeem(ticket), return_exceptions=True)
        winners = [r for r in results if isinstance(r, Principal)]
        losers = [r for r in results if isinstance(r, GatewayError)]
        assert winners == [ALICE] and [e.code for e in losers] == ["ticket_used"]
        with pytest.raises(GatewayError) as info:
            await b.redeem("tk_" + "x" * 40)
        assert info.value.code == "invalid_ticket"


async def test_expired_ticket_is_refused() -> None:
    async with redis_prefix() as (redis, prefix):
        store = RedisTicketStore(redis, prefix)
        ticket = await store.issue(ALICE, 0.05)
        await asyncio.sleep(0.1)
        with pytest.raises(GatewayError) as info:
            await store.redeem(ticket)
        assert info.value.code == "ticket_expired"


async def test_concurrency_cap_holds_across_instances_and_frees_on_release() -> None:
    async with redis_prefix() as (redis, prefix):
        a = RedisUserLimiter(redis, prefix, max_concurrent=3, starts_per_minute=100)
        b = RedisUserLimiter(redis, prefix, max_concurrent=3, starts_per_minute=100)
        await a.admit("u1")
        await b.admit("u1")
        await a.admit("u1")
        with pytest.raises(GatewayError) as info:
            await b.admit("u1")
        assert info.value.code == "too_many_streams"
        await b.admit("u2")  # another user is unaffected
        a.release("u1")
        await asyncio.sleep(0.05)
        await b.admit("u1")
        assert a.running("u1") == 1 and b.running("u1") == 2
        await a.aclose()
        await b.aclose()


async def test_starts_per_minute_shared() -> None:
    async with redis_prefix() as (redis, prefix):
        a = RedisUserLimiter(redis, prefix, max_concurrent=100, starts_per_minute=4)
        b = RedisUserLimiter(redis, prefix, max_concurrent=100, starts_per_minute=4)
        for lim in (a, b, a, b):
            await lim.admit("u1")
        with pytest.raises(GatewayError) as info:
            await a.admit("u1")
        assert info.value.code == "rate_limited" and info.value.retry_after_s is not None
        assert 0 < info.value.retry_after_s <= 60


async def test_limiter_degrades_to_local_when_redis_is_gone() -> None:
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    lim = RedisUserLimiter(dead, "x", max_concurrent=2, starts_per_minute=100)
    await lim.admit("u")
    await lim.admit("u")
    with pytest.raises(GatewayError) as refused:
        await lim.admit("u")
    assert refused.value.kind == "limited"
    assert lim.healthy is False
    lim.release("u")
    await lim.admit("u")
    await dead.aclose()


async def test_breaker_opens_for_every_instance_then_one_probe_closes_it() -> None:
    async with redis_prefix() as (redis, prefix):
        a = RedisBreaker(redis, prefix, min_requests=3, window_s=10, cooldown_s=0.3)
        b = RedisBreaker(redis, prefix, min_requests=3, window_s=10, cooldown_s=0.3)
        for brk in (a, b, a):
            assert await brk.acquire("openai", "gpt-5-mini")
            await brk.failure("openai", "gpt-5-mini")
        assert not await a.acquire("openai", "gpt-5-mini")
        assert not await b.acquire("openai", "gpt-5-mini")
        assert await b.acquire("anthropic", "claude-sonnet-4-5")  # other models unaffected
        await asyncio.sleep(0.35)
        probes = [await a.acquire("openai", "gpt-5-mini"), await b.acquire("openai", "gpt-5-mini")]
        assert sorted(probes) == [False, True]
        await a.success("openai", "gpt-5-mini")
        assert await b.acquire("openai", "gpt-5-mini")


async def test_shared_breaker_counts_a_failure_rate_from_every_instance() -> None:
    async with redis_prefix() as (redis, prefix):
        a = RedisBreaker(redis, prefix, min_requests=10, failure_rate=0.5, window_s=30, cooldown_s=0.3)
        b = RedisBreaker(redis, prefix, min_requests=10, failure_rate=0.5, window_s=30, cooldown_s=0.3)
        for i in range(200):  # six failures among 200 outcomes, split over two instances
            brk = (a, b)[i % 2]
            assert await brk.acquire("openai", "gpt-5-mini")
            await (brk.failure if i % 33 == 16 else brk.success)("openai", "gpt-5-mini")
        for _ in range(50):  # one user's key refused or rate limited: released, counting for nothing
            assert await a.acquire("openai", "gpt-5-mini")
            await a.release("openai", "gpt-5-mini")
        assert await a.acquire("openai", "gpt-5-mini") and await b.acquire("openai", "gpt-5-mini")
        await redis.delete(f"{prefix}:brk:openai:gpt-5-mini:window")
        # A provider-wide storm: nine failures are too few to judge, the tenth opens it for every instance.
        for i in range(9):
            await (a, b)[i % 2].failure("openai", "gpt-5-mini")
        assert await b.acquire("openai", "gpt-5-mini")
        await a.failure("openai", "gpt-5-mini")
        assert not await a.acquire("openai", "gpt-5-mini") and not await b.acquire("openai", "gpt-5-mini")
        await asyncio.sleep(0.35)
        assert await b.acquire("openai", "gpt-5-mini")  # the probe
        assert not await a.acquire("openai", "gpt-5-mini")
        await b.success("openai", "gpt-5-mini")
        assert await a.acquire("openai", "gpt-5-mini")
        await a.failure("openai", "gpt-5-mini")  # closed with a clean count: one failure opens nothing
        assert await b.acquire("openai", "gpt-5-mini")


async def test_failed_probe_reopens() -> None:
    async with redis_prefix() as (redis, prefix):
        brk = RedisBreaker(redis, prefix, min_requests=1, window_s=10, cooldown_s=0.2)
        await brk.failure("gemini", "flash")
        assert not await brk.acquire("gemini", "flash")
        await asyncio.sleep(0.25)
        assert await brk.acquire("gemini", "flash")
        await brk.failure("gemini", "flash")
        assert not await brk.acquire("gemini", "flash")


async def test_without_redis_tickets_work_in_process_and_one_warning_covers_every_component(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.cluster")
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    clock = [0.0]
    health = RedisHealth(instance_id="i1", retry_s=1.0, clock=lambda: clock[0])
    tickets = RedisTicketStore(dead, "x", health=health)
    limiter = RedisUserLimiter(dead, "x", max_concurrent=1, starts_per_minute=100, health=health)
    breaker = RedisBreaker(dead, "x", min_requests=2, window_s=10, cooldown_s=30, health=health)
    try:
        ticket = await tickets.issue(ALICE, 60)  # the first failure; later calls skip Redis for a second
        assert (await tickets.redeem(ticket)).user_id == ALICE.user_id
        with pytest.raises(GatewayError) as used:
            await tickets.redeem(ticket)
        assert used.value.code == "ticket_used"
        await limiter.admit("u")
        with pytest.raises(GatewayError) as limited:
            await limiter.admit("u")
        assert limited.value.kind == "limited"
        for _ in range(50):
            await breaker.failure("openai", "m")
        assert not await breaker.acquire("openai", "m")  # the in-process breaker opened
        clock[0] += 2  # the pause is over: the next call probes Redis again, still down, and stays quiet
        with pytest.raises(GatewayError) as unknown:
            await tickets.redeem("tk_" + "x" * 40)
        assert unknown.value.code == "auth_unavailable" and status_of(unknown.value) == 503
    finally:
        await dead.aclose()
    warnings = [r for r in caplog.records if r.name == "gateway.cluster"]
    assert len(warnings) == 1 and getattr(warnings[0], "instance", None) == "i1"
    assert health.outages == 1 and not health.healthy
