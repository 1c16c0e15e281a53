"""Live spend: the bus (in-process and Redis pub/sub) and `GET /v1/usage/stream` against real gateways."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.auth import DEV_USER_ID
from gateway.bus import ALL, MemoryBus
from providers.events import Usage
from providers.segments import Segment
from sessions.records import StreamRecord
from tests.conftest import Live, service_unavailable
from tests.support.clients import SSEEvent, collect_sse, iter_sse, user_msg
from tests.support.redis import REDIS_URL

OTHER_USER = "00000000-0000-4000-8000-0000000000b2"


class SpendListener:
    """Reads `GET /v1/usage/stream` in the background into a queue of events."""

    def __init__(self, client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> None:
        self.client, self.url, self.headers = client, url, headers
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.status: int | None = None

    async def _run(self) -> None:
        async with self.client.stream("GET", self.url, headers=self.headers) as r:
            self.status = r.status_code
            self._ready.set()
            assert r.headers["content-type"].startswith("text/event-stream")
            async for ev in iter_sse(r):
                if isinstance(ev, SSEEvent):
                    assert ev.event == ev.data["type"]
                    await self.events.put(ev.data)

    async def __aenter__(self) -> SpendListener:
        self._task = asyncio.create_task(self._run())
        async with asyncio.timeout(10):
            await self._ready.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def until_stream(self, stream_id: str, timeout: float = 10) -> list[dict[str, Any]]:
        """Events up to and including the `spend.stream` of `stream_id`."""
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while True:
                ev = await self.events.get()
                seen.append(ev)
                if ev["type"] == "spend.stream" and ev["stream_id"] == stream_id:
                    return seen


async def run_stream(client: httpx.AsyncClient, live: Live, prompt: str, token: str | None = None) -> list[SSEEvent]:
    return await collect_sse(
        client,
        "POST",
        f"{live.url}/v1/chat/stream",
        headers=live.headers(token),
        json={"model": "mock", "messages": user_msg(prompt)},
    )


def check_settled(ev: dict[str, Any], done: dict[str, Any], user_id: str) -> None:
    assert ev["user_id"] == user_id
    assert ev["status"] == "done"
    assert ev["cost_usd"] == done["cost_usd"]
    assert ev["output_tokens"] == done["usage"]["output_tokens"]
    assert ev["input_tokens"] == done["usage"]["input_tokens"]
    assert [s["model"] for s in ev["segments"]] == [s["model"] for s in done["segments"]]
    assert [s["cost_usd"] for s in ev["segments"]] == [s["cost_usd"] for s in done["segments"]]
    # One segment encoding: the dashboard's segments are the stream's own, less the event-only `failover_ms`.
    assert ev["segments"] == [{k: v for k, v in s.items() if k != "failover_ms"} for s in done["segments"]]


async def test_dashboard_sees_ticks_then_the_settled_stream(live: Live) -> None:
    async with (
        httpx.AsyncClient(timeout=20) as client,
        SpendListener(client, f"{live.url}/v1/usage/stream", live.headers()) as spend,
    ):
        events = await run_stream(client, live, "count [[mock tokens=100 delay_ms=5]]")
        sid = events[0].data["stream_id"]
        seen = await spend.until_stream(sid)
    ticks = [e for e in seen if e["type"] == "spend.tick" and e["stream_id"] == sid]
    assert ticks, "no running-cost tick while the stream ran"
    assert all(t["estimated"] is True and t["model"] == "mock" for t in ticks)
    costs = [Decimal(t["cost_usd"]) for t in ticks]
    assert costs == sorted(costs) and costs[0] > 0
    assert [t["output_tokens"] for t in ticks] == sorted(t["output_tokens"] for t in ticks)
    settled = seen[-1]
    check_settled(settled, events[-1].data, DEV_USER_ID)
    assert settled["output_tokens"] == 100 and settled["fallbacks"] == 0
    assert Decimal(settled["cost_usd"]) >= costs[-1]


async def test_a_short_slow_stream_ticks_by_time_not_only_by_count(live: Live) -> None:
    # Six tokens, far fewer than a count-based tick needs, spread over about two seconds.
    async with (
        httpx.AsyncClient(timeout=20) as client,
        SpendListener(client, f"{live.url}/v1/usage/stream", live.headers()) as spend,
    ):
        events = await run_stream(client, live, "slow [[mock tokens=6 delay_ms=350]]")
        sid = events[0].data["stream_id"]
        seen = await spend.until_stream(sid)
    ticks = [e for e in seen if e["type"] == "spend.tick" and e["stream_id"] == sid]
    assert len(ticks) >= 2, ticks
    assert [t["output_tokens"] for t in ticks] == sorted(t["output_tokens"] for t in ticks)
    assert ticks[0]["output_tokens"] < ticks[-1]["output_tokens"]


async def test_fallback_segments_reach_the_dashboard(live: Live) -> None:
    async with (
        httpx.AsyncClient(timeout=20) as client,
        SpendListener(client, f"{live.url}/v1/usage/stream", live.headers()) as spend,
    ):
        events = await run_stream(client, live, "q [[mock tokens=8 fail_after=3 only=mock]]")
        sid = events[0].data["stream_id"]
        settled = (await spend.until_stream(sid))[-1]
    assert settled["fallbacks"] == 1
    assert [(s["model"], s["status"], s["reason"]) for s in settled["segments"]] == [
        ("mock", "failed", "server_error"),
        ("mock-backup", "ok", None),
    ]
    assert settled["segments"][0]["estimated"] is True
    check_settled(settled, events[-1].data, DEV_USER_ID)


async def test_a_user_sees_only_their_own_spend(live: Live) -> None:
    other = live.services.auth.mint_dev_token(user_id=OTHER_USER)
    service = live.services.auth.mint_dev_token(user_id=OTHER_USER, role="service_role")
    async with httpx.AsyncClient(timeout=20) as client:
        r = await client.get(f"{live.url}/v1/usage/stream", params={"user_id": OTHER_USER}, headers=live.headers())
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
        async with (
            SpendListener(client, f"{live.url}/v1/usage/stream", live.headers()) as mine,
            SpendListener(client, f"{live.url}/v1/usage/stream", live.headers(other)) as theirs,
            SpendListener(client, f"{live.url}/v1/usage/stream?user_id=*", live.headers(service)) as everyone,
        ):
            a = await run_stream(client, live, "mine [[mock tokens=4]]")
            b = await run_stream(client, live, "theirs [[mock tokens=4]]", other)
            sid_a, sid_b = a[0].data["stream_id"], b[0].data["stream_id"]
            got_all = await everyone.until_stream(sid_b)
            got_theirs = await theirs.until_stream(sid_b)
            # the dev user's own stream, then nothing of the other user's within a short wait
            got_mine = await mine.until_stream(sid_a)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.8):
                    got_mine.append(await mine.events.get())
    assert {e["stream_id"] for e in got_all if e["type"] == "spend.stream"} >= {sid_a, sid_b}
    assert {e["stream_id"] for e in got_theirs} == {sid_b}
    assert all(e["user_id"] == OTHER_USER for e in got_theirs)
    assert {e["stream_id"] for e in got_mine} == {sid_a}


def _record(stream_id: str, user: str = "u1") -> StreamRecord:
    now = datetime.now(UTC)
    seg = Segment(1, "mock", "mock", usage=Usage(10, 5), cost_usd=Decimal("0.000020"))
    return StreamRecord(stream_id, user, None, "mock", "done", "stop", None, now, now, [seg])


async def test_the_settled_stream_keeps_cached_and_reasoning_tokens() -> None:
    bus = MemoryBus(flush_interval_s=0.01)
    await bus.start()
    try:
        async with bus.subscribe("u1") as sub:
            record = _record("st_tokens")
            record.segments[0].usage = Usage(10, 5, cached_input_tokens=7, reasoning_tokens=3)
            bus.finished(record)
            got = await asyncio.wait_for(sub.get(), 5)
        assert got is not None
        seg = json.loads(got)["segments"][0]
        assert (seg["input_tokens"], seg["output_tokens"], seg["cached_input_tokens"], seg["reasoning_tokens"]) == (
            10,
            5,
            7,
            3,
        )
    finally:
        await bus.aclose()


async def test_the_settled_stream_counts_cache_reads_and_writes_apart() -> None:
    bus = MemoryBus(flush_interval_s=0.01)
    await bus.start()
    try:
        async with bus.subscribe("u1") as sub:
            record = _record("st_cache")
            record.segments[0].usage = Usage(2000, 5, cached_input_tokens=600, cache_write_input_tokens=1200)
            bus.finished(record)
            got = await asyncio.wait_for(sub.get(), 5)
        assert got is not None
        ev = json.loads(got)
        assert (ev["input_tokens"], ev["cached_input_tokens"], ev["cache_write_input_tokens"]) == (2000, 600, 1200)
        seg = ev["segments"][0]
        assert (seg["cached_input_tokens"], seg["cache_write_input_tokens"]) == (600, 1200)
    finally:
        await bus.aclose()


async def test_ticks_are_coalesced_and_slow_subscribers_are_dropped() -> None:
    bus = MemoryBus(flush_interval_s=0.05, max_queue=4)
    await bus.start()
    try:
        async with bus.subscribe("u1") as fast, bus.subscribe(ALL) as slow:
            for i in range(1, 50):  # one stream ticking many times between two flushes
                bus.running("u1", "st_a", "mock", Decimal(i) / 1000, i)
            bus.finished(_record("st_a"))
            first = await asyncio.wait_for(fast.get(), 5)
            assert first is not None
            ev = json.loads(first)
            # the settled event superseded every pending tick of that stream
            assert ev["type"] == "spend.stream" and ev["stream_id"] == "st_a"
            for n in range(8):  # `slow` never reads: it overflows and is closed, `fast` keeps up
                bus.finished(_record(f"st_{n}"))
                got = await asyncio.wait_for(fast.get(), 5)
                assert got is not None and json.loads(got)["stream_id"] == f"st_{n}"
            assert slow.closed and slow.lagged
            assert not fast.closed
        assert bus.subscriber_count() == 0
    finally:
        await bus.aclose()


# -- Redis: several gateway instances feed one dashboard ----------------------------------


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except (RedisError, OSError):
        await client.aclose()
        service_unavailable("Redis")
    prefix = f"test-{secrets.token_hex(6)}"
    try:
        yield prefix
    finally:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.mark.services
async def test_redis_bus_feeds_a_dashboard_on_another_instance(
    redis_prefix: str, live_factory: Callable[..., Any]
) -> None:
    # The prefix fixture comes first so its cleanup runs after the gateways wrote their last stream logs.
    first: Live = await live_factory(redis_url=REDIS_URL, gateway_redis_prefix=redis_prefix)
    second: Live = await live_factory(redis_url=REDIS_URL, gateway_redis_prefix=redis_prefix)
    assert first.url != second.url
    async with (
        httpx.AsyncClient(timeout=20) as client,
        SpendListener(client, f"{first.url}/v1/usage/stream", first.headers()) as spend,
    ):
        # The same development key signs on both instances, so the same user streams on the second.
        events = await run_stream(client, second, "far away [[mock tokens=100 delay_ms=5]]", first.token)
        sid = events[0].data["stream_id"]
        seen = await spend.until_stream(sid)
    assert first.services.sessions.live_count() == 0 and not any(
        s.id == sid for s in first.services.sessions.live_sessions()
    )
    assert any(e["type"] == "spend.tick" and e["stream_id"] == sid for e in seen)
    check_settled(seen[-1], events[-1].data, DEV_USER_ID)
    # each event arrived once, through Redis
    settled = [e for e in seen if e["type"] == "spend.stream"]
    assert len(settled) == 1


async def test_an_unreachable_redis_never_breaks_streaming(live_factory: Callable[..., Any]) -> None:
    # Nothing listens on port 1: live spend is dropped (and counted), streams and their billing carry on.
    live: Live = await live_factory(redis_url="redis://127.0.0.1:1/0", gateway_redis_prefix="unreachable")
    bus = live.services.spend
    async with httpx.AsyncClient(timeout=20) as client:
        events = await run_stream(client, live, "still fine [[mock tokens=5]]")
        assert events[-1].event == "done"
        async with asyncio.timeout(10):
            while bus.dropped < 1:
                await asyncio.sleep(0.05)
    assert bus.published >= 1
