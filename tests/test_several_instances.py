"""Two gateways on loopback sharing one Redis: a stream started on one resumes, and stops, on the other; the
per-user cap counts both; a ticket from one works once on the other; a Redis restart mid-stream loses nothing
billed and sharing comes back. (A dashboard on one instance seeing spend from the other is in
test_spend_bus.py.)"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import websockets
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.auth import DEV_USER_ID
from sessions.errors import GatewayError
from tests.conftest import Live, service_unavailable
from tests.support.clients import SSEEvent, collect_sse, iter_sse, text_of, user_msg
from tests.support.redis import REDIS_URL, redis_prefix
from tests.support.server import free_port
from tests.test_resume import Frames, check_exact, ledger_rows, ticket, wait_for, ws_start

# The mock's words depend on the prompt without its directive: the same text with no delay is the reference.
SLOW = "[[mock tokens=150 delay_ms=15]]"
FAST = "[[mock tokens=150]]"


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    # Tests ask for it before `live_factory`, so its keys are removed after the gateways stopped writing them.
    async with redis_prefix() as (_client, value):
        yield value


async def two(live_factory: Callable[..., Any], url: str, prefix: str, **settings: Any) -> tuple[Live, Live]:
    # Streams still running at the end of a test are stopped at once rather than awaited.
    opts = {"redis_url": url, "gateway_redis_prefix": prefix, "gateway_drain_deadline_s": 0.5, **settings}
    first: Live = await live_factory(**opts)
    second: Live = await live_factory(**opts)
    assert first.services.cluster.instance_id != second.services.cluster.instance_id
    return first, second


async def reference(gw: Live, text: str) -> str:
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
        events = await collect_sse(
            client, "POST", "/v1/chat/stream", headers=gw.headers(), json={"model": "mock", "messages": user_msg(text)}
        )
    return text_of([e.data for e in events])


async def frames_until(ws: Any, done: Callable[[dict[str, Any]], bool], timeout: float = 15) -> Frames:
    out: Frames = []
    async with asyncio.timeout(timeout):
        while True:
            f = json.loads(await ws.recv())
            out.append(f)
            if done(f):
                return out


def ends(cid: str) -> Callable[[dict[str, Any]], bool]:
    return lambda f: f.get("id") == cid and f["type"] in ("done", "error")


def not_here(gw: Live, sid: str) -> bool:
    try:
        gw.services.sessions.get(sid, DEV_USER_ID)
    except GatewayError:
        return True
    return False


# -- resume on the other instance -------------------------------------------------------------------------------------


async def test_sse_stream_from_a_resumes_on_b_exactly_and_only_for_its_user(
    prefix: str, live_factory: Callable[..., Any]
) -> None:
    # A short resume window on the owner: the stream must outlive it because B follows it.
    a, b = await two(live_factory, REDIS_URL, prefix, gateway_resume_window_s=1.0)
    expected = await reference(a, f"across instances {FAST}")
    sid, last_id, first = await a.chat_then_drop(f"across instances {SLOW}", 8)
    assert last_id == f"{sid}:8"
    other = b.services.auth.mint_dev_token(user_id=str(uuid.uuid4()))
    async with httpx.AsyncClient(base_url=b.url, timeout=20) as client:
        # Someone else's stream looks exactly like a missing one, to resume and to stop.
        theirs = await client.get(
            f"/v1/streams/{sid}/events", headers={"authorization": f"Bearer {other}", "last-event-id": last_id}
        )
        missing = await client.get(
            "/v1/streams/st_missing/events", headers={"authorization": f"Bearer {other}", "last-event-id": last_id}
        )
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json() == missing.json() and theirs.json()["error"]["code"] == "stream_not_found"
        stop = await client.post(f"/v1/streams/{sid}/cancel", headers={"authorization": f"Bearer {other}"})
        assert stop.status_code == 404
        # The owner resumes on B, authenticated by a ticket that A issued.
        async with httpx.AsyncClient(base_url=a.url, timeout=10) as at_a:
            t = await ticket(at_a, a.token)
        rest = await collect_sse(
            client, "GET", f"/v1/streams/{sid}/events?ticket={t}", headers={"last-event-id": last_id}
        )
        again = await client.get(f"/v1/streams/{sid}/events?ticket={t}", headers={"last-event-id": last_id})
        assert again.status_code == 401 and again.json()["error"]["code"] == "ticket_used"
    assert all(e.id == f"{sid}:{e.data['seq']}" for e in rest)
    check_exact(first, [e.data for e in rest], expected)
    assert rest[-1].data["finish_reason"] == "stop"  # not stopped by A's resume window while B followed
    assert not_here(b, sid)
    rows = await ledger_rows(a)
    assert rows[sid]["status"] == "done" and rows[sid]["output_tokens"] == 150
    assert sid not in await ledger_rows(b)


async def test_websocket_stream_from_a_resumes_on_b_then_stops_from_b(
    prefix: str, live_factory: Callable[..., Any]
) -> None:
    a, b = await two(live_factory, REDIS_URL, prefix)
    expected = await reference(a, f"socket hop {FAST}")
    async with websockets.connect(f"{a.ws_url}/v1/ws", additional_headers=a.headers()) as ws:
        await ws_start(ws, "c1", f"socket hop {SLOW}")
        await ws_start(ws, "c2", "socket hop two [[mock tokens=1000 delay_ms=15]]")
        frames: Frames = []
        async with asyncio.timeout(10):
            while sum(f.get("id") == "c1" for f in frames) < 10:
                frames.append(json.loads(await ws.recv()))
    first = [f for f in frames if f.get("id") == "c1"]
    sid = first[0]["stream_id"]
    sid2 = next(f["stream_id"] for f in frames if f.get("id") == "c2")
    other = b.services.auth.mint_dev_token(user_id=str(uuid.uuid4()))
    async with websockets.connect(f"{b.ws_url}/v1/ws", additional_headers=b.headers(other)) as ws:
        await ws.send(json.dumps({"type": "chat.resume", "id": "x", "stream_id": sid, "last_seq": 1}))
        refused = json.loads(await ws.recv())
        assert refused["type"] == "error" and refused["code"] == "stream_not_found" and refused["stream_id"] is None
    async with websockets.connect(f"{b.ws_url}/v1/ws", additional_headers=b.headers()) as ws:
        await ws.send(json.dumps({"type": "chat.resume", "id": "r1", "stream_id": sid, "last_seq": first[-1]["seq"]}))
        rest = await frames_until(ws, ends("c1"))
        check_exact(first, rest, expected)
        # The second stream, resumed here too, is stopped from here: its owner, A, closes it and bills it.
        await ws.send(json.dumps({"type": "chat.resume", "id": "r2", "stream_id": sid2, "last_seq": 1}))
        await frames_until(ws, lambda f: f.get("id") == "c2" and f["type"] == "delta")
        await ws.send(json.dumps({"type": "chat.cancel", "id": "c2"}))
        stopped = await frames_until(ws, ends("c2"))
    assert stopped[-1]["type"] == "done" and stopped[-1]["finish_reason"] == "cancelled"
    assert not_here(b, sid) and not_here(b, sid2)
    rows = await ledger_rows(a)
    assert rows[sid]["status"] == "done"
    assert rows[sid2]["status"] == "cancelled" and 0 < rows[sid2]["output_tokens"] < 1000


async def test_stop_over_http_on_b_stops_the_stream_on_a(prefix: str, live_factory: Callable[..., Any]) -> None:
    a, b = await two(live_factory, REDIS_URL, prefix)
    sid, _last, _first = await a.chat_then_drop(f"stop it elsewhere {SLOW}", 3)
    async with httpx.AsyncClient(base_url=b.url, timeout=10) as client:
        r = await client.post(f"/v1/streams/{sid}/cancel", headers=b.headers())
        assert r.json() == {"stream_id": sid, "cancelled": True, "status": "cancelling"}
        session = await wait_for(lambda: (s := a.services.sessions.get(sid, DEV_USER_ID)).finished and s)
        assert session.cancel_reason == "client"

        async def finished_there() -> bool:
            res = await client.post(f"/v1/streams/{sid}/cancel", headers=b.headers())
            return bool(res.json() == {"stream_id": sid, "cancelled": False, "status": "finished"})

        async with asyncio.timeout(5):
            while not await finished_there():  # once the end reached Redis
                await asyncio.sleep(0.05)
    assert (await ledger_rows(a))[sid]["status"] == "cancelled"


async def test_a_stream_nobody_resumes_anywhere_still_stops_after_the_window(
    prefix: str, live_factory: Callable[..., Any]
) -> None:
    a, _b = await two(live_factory, REDIS_URL, prefix, gateway_resume_window_s=0.3)
    sid, _last, _first = await a.chat_then_drop(f"abandoned {SLOW}", 3)
    session = a.services.sessions.get(sid, DEV_USER_ID)
    await wait_for(lambda: session.finished, timeout=10)
    assert session.cancel_reason == "disconnect"
    assert (await ledger_rows(a))[sid]["status"] == "cancelled"


async def test_resume_on_b_after_the_stream_finished_on_a_replays_the_tail(
    prefix: str, live_factory: Callable[..., Any]
) -> None:
    a, b = await two(live_factory, REDIS_URL, prefix)
    expected = await reference(a, f"read it later {FAST}")
    sid, last_id, first = await a.chat_then_drop(f"read it later {SLOW}", 5)
    await wait_for(lambda: a.services.sessions.get(sid, DEV_USER_ID).finished)
    await asyncio.sleep(0.1)  # the end reaches Redis within a flush
    async with httpx.AsyncClient(base_url=b.url, timeout=10) as client:
        rest = await collect_sse(
            client, "GET", f"/v1/streams/{sid}/events", headers={**b.headers(), "last-event-id": last_id}
        )
        # Nothing to stop any more.
        r = await client.post(f"/v1/streams/{sid}/cancel", headers=b.headers())
        assert r.json()["status"] == "finished"
    check_exact(first, [e.data for e in rest], expected)


# -- limits -----------------------------------------------------------------------------------------------------------


async def test_the_concurrent_stream_cap_holds_across_instances(prefix: str, live_factory: Callable[..., Any]) -> None:
    a, b = await two(live_factory, REDIS_URL, prefix, gateway_max_concurrent_streams=2)
    long = "[[mock tokens=2000 delay_ms=20]]"
    async with (
        websockets.connect(f"{a.ws_url}/v1/ws", additional_headers=a.headers()) as wa,
        websockets.connect(f"{b.ws_url}/v1/ws", additional_headers=b.headers()) as wb,
    ):
        await ws_start(wa, "a1", f"one {long}")
        await ws_start(wa, "a2", f"two {long}")
        running: set[str] = set()

        def both_running(f: dict[str, Any]) -> bool:
            assert f["type"] != "error", f
            if f["type"] == "stream.started":
                running.add(f["id"])
            return running == {"a1", "a2"}

        await frames_until(wa, both_running)
        await ws_start(wb, "b1", f"three {long}")
        refused = await frames_until(wb, lambda f: f.get("id") == "b1")
        assert refused[-1]["type"] == "error" and refused[-1]["code"] == "too_many_streams"
        async with httpx.AsyncClient(base_url=b.url, timeout=10) as client:
            r = await client.post(
                "/v1/chat/stream", headers=b.headers(), json={"model": "mock", "messages": user_msg(long)}
            )
            assert r.status_code == 429 and r.json()["error"]["code"] == "too_many_streams"
        # One stream ends on A: B may start one, and then A is at the cap again.
        await wa.send(json.dumps({"type": "chat.cancel", "id": "a1"}))
        await frames_until(wa, ends("a1"))
        async with asyncio.timeout(10):
            for attempt in range(200):
                await ws_start(wb, f"b2-{attempt}", f"four {long}")
                f = (await frames_until(wb, lambda g, n=attempt: g.get("id") == f"b2-{n}"))[-1]
                if f["type"] != "error":
                    break
                assert f["code"] == "too_many_streams"
                await asyncio.sleep(0.05)
        assert f["type"] == "stream.started"
        await ws_start(wa, "a3", f"five {long}")
        late = await frames_until(wa, lambda g: g.get("id") == "a3")
        assert late[-1]["type"] == "error" and late[-1]["code"] == "too_many_streams"


# -- Redis going away -------------------------------------------------------------------------------------------------


class ThrowawayRedis:
    """A private redis-server on a free port, to kill and restart without touching the shared one."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--daemonize", "no"),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        client = Redis.from_url(self.url)
        try:
            async with asyncio.timeout(10):
                while True:
                    try:
                        await client.ping()
                        return
                    except (RedisError, OSError):
                        await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


@pytest.fixture
async def throwaway_redis() -> AsyncIterator[ThrowawayRedis]:
    if shutil.which("redis-server") is None:
        service_unavailable("redis-server")
    server = ThrowawayRedis()
    await server.start()
    try:
        yield server
    finally:
        await server.kill()


async def test_redis_restarted_mid_stream_loses_nothing_billed_and_sharing_comes_back(
    live_factory: Callable[..., Any], throwaway_redis: ThrowawayRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.cluster")
    caplog.set_level(logging.INFO, logger="gateway.spend")
    a, b = await two(live_factory, throwaway_redis.url, "outage")
    slow, fast = "[[mock tokens=120 delay_ms=20]]", "[[mock tokens=120]]"
    expected = {n: await reference(a, f"outage {n} {fast}") for n in range(4)}

    async def whole(gw: Live, n: int) -> Frames:
        async with httpx.AsyncClient(base_url=gw.url, timeout=30) as client:
            body = {"model": "mock", "messages": user_msg(f"outage {n} {slow}")}
            events = await collect_sse(client, "POST", "/v1/chat/stream", headers=gw.headers(), json=body)
        return [e.data for e in events]

    following = asyncio.Event()

    async def hop(n: int) -> tuple[Frames, Frames]:
        """Started on A, dropped, followed from B through the outage."""
        sid, last_id, first = await a.chat_then_drop(f"outage {n} {slow}", 5)
        async with (
            httpx.AsyncClient(base_url=b.url, timeout=30) as client,
            client.stream("GET", f"/v1/streams/{sid}/events", headers={**b.headers(), "last-event-id": last_id}) as r,
        ):
            assert r.status_code == 200, (r.status_code, await r.aread())
            following.set()
            rest = [ev.data async for ev in iter_sse(r) if isinstance(ev, SSEEvent)]
        return first, rest

    runs = asyncio.gather(whole(a, 0), whole(a, 1), whole(b, 2), hop(3))
    # Redis goes away mid-stream, and only once B follows the hopped stream: B finds a stream on another
    # instance through Redis, so a lookup during the outage rightly answers stream_not_found (see README).
    await asyncio.sleep(0.6)
    attached = asyncio.ensure_future(following.wait())
    await asyncio.wait([attached, runs], return_when=asyncio.FIRST_COMPLETED)
    if runs.done():
        runs.result()  # a run that failed before the outage: its own error rather than a hang
        pytest.fail("the streams ended before Redis went away")
    await throwaway_redis.kill()
    await asyncio.sleep(0.8)  # streams go on without Redis
    await throwaway_redis.start()  # empty: it kept nothing
    on_a0, on_a1, on_b2, (first3, rest3) = await asyncio.wait_for(runs, 30)

    for n, frames in enumerate((on_a0, on_a1, on_b2)):
        check_exact(frames[:1], frames[1:], expected[n])
    # Even the stream followed from the other instance: its shared copy was rewritten from the owner's memory.
    check_exact(first3, rest3, expected[3])
    assert a.services.cluster.mirror.rewrites >= 1
    rows_a, rows_b = await ledger_rows(a), await ledger_rows(b)
    for frames, rows in ((on_a0, rows_a), (on_a1, rows_a), (on_b2, rows_b), (first3, rows_a)):
        row = rows[frames[0]["stream_id"]]
        assert row["status"] == "done" and row["output_tokens"] == 120

    # One warning per instance for the whole outage, not one per call or per token.
    down = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "gateway.cluster"]
    assert sorted(getattr(r, "instance", "") for r in down) == sorted(
        [a.services.cluster.instance_id, b.services.cluster.instance_id]
    ), [r.getMessage() for r in down]
    # Live spend (best effort) says at most once that it lost its subscription and once that it drops events.
    spend = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "gateway.spend"]
    assert len(spend) <= 4, [r.getMessage() for r in spend]

    # Sharing is back: a new stream from A resumes on B.
    await wait_for(lambda: a.services.cluster.health.healthy and b.services.cluster.health.healthy)
    expected_after = await reference(a, f"after the outage {FAST}")
    sid, last_id, first = await a.chat_then_drop(f"after the outage {SLOW}", 4)
    async with httpx.AsyncClient(base_url=b.url, timeout=20) as client:
        rest = await collect_sse(
            client, "GET", f"/v1/streams/{sid}/events", headers={**b.headers(), "last-event-id": last_id}
        )
    check_exact(first, [e.data for e in rest], expected_after)


async def test_a_hole_in_a_shared_log_ends_the_follow_with_resume_too_old(
    prefix: str, live_factory: Callable[..., Any]
) -> None:
    # A stream whose owner is gone and whose shared copy lost events 4 and 5 (as after an outage longer than the
    # owner's log): followers get what is there, then are told, rather than reading past the hole.
    gw: Live = await live_factory(redis_url=REDIS_URL, gateway_redis_prefix=prefix)
    redis = gw.services.cluster.redis
    sid = "st_orphaned"
    for seq in (1, 2, 3, 6):
        data = json.dumps({"type": "delta", "stream_id": sid, "id": "c9", "seq": seq, "text": f" w{seq}"})
        await redis.xadd(f"{prefix}:log:{sid}", {"n": "delta", "d": data}, id=f"{seq}-0")
    await redis.hset(f"{prefix}:meta:{sid}", mapping={"user": DEV_USER_ID, "instance": "gone", "client": "c9"})
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
        events = await collect_sse(client, "GET", f"/v1/streams/{sid}/events?after=1", headers=gw.headers())
        assert [e.data["seq"] for e in events[:-1]] == [2, 3]
        assert events[-1].event == "error" and events[-1].id is None
        assert events[-1].data["code"] == "resume_too_old" and events[-1].data["stream_id"] is None
        # Its owner is gone: nobody can stop it.
        r = await client.post(f"/v1/streams/{sid}/cancel", headers=gw.headers())
        assert r.status_code == 404 and r.json()["error"]["code"] == "stream_not_found"
    async with websockets.connect(f"{gw.ws_url}/v1/ws", additional_headers=gw.headers()) as ws:
        await ws.send(json.dumps({"type": "chat.resume", "id": "r", "stream_id": sid, "last_seq": 0}))
        frames = await frames_until(ws, lambda f: f["type"] == "error")
    assert [f["seq"] for f in frames[:-1]] == [1, 2, 3] and frames[-1]["code"] == "resume_too_old"
