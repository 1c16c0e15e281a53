"""Two real gateway processes sharing Redis: the one running a stream is killed (SIGKILL, no drain), and clients
following that stream from the other learn it within a few seconds, with `stream_owner_lost`, over SSE and over
the WebSocket (rather than waiting about 30 s in silence)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.support.clients import SSEEvent, iter_sse, user_msg
from tests.support.process import start_gateway
from tests.support.redis import REDIS_URL, redis_prefix
from tests.support.server import free_port

pytestmark = pytest.mark.slow

SIGNING_KEY = "owner-lost-test-signing-key-0123456789abcdef0123"
LONG = "[[mock tokens=3000 delay_ms=20]]"


async def start_on_owner(url: str, token: str) -> tuple[str, str]:
    """Start a long stream over SSE, read a few events, drop the connection: (stream id, last event id)."""
    async with (
        httpx.AsyncClient(base_url=url, timeout=10) as client,
        client.stream(
            "POST",
            "/v1/chat/stream",
            headers={"authorization": f"Bearer {token}"},
            json={"model": "mock", "messages": user_msg(f"far away {LONG}")},
        ) as r,
    ):
        sid = r.headers["x-stream-id"]
        async for ev in iter_sse(r):
            if isinstance(ev, SSEEvent) and ev.data["seq"] >= 4:
                return sid, ev.id or ""
    raise AssertionError("the stream ended early")


async def follow_sse(url: str, token: str, sid: str, last_id: str, out: list[SSEEvent], live: asyncio.Event) -> None:
    headers = {"authorization": f"Bearer {token}", "last-event-id": last_id}
    async with (
        httpx.AsyncClient(base_url=url, timeout=60) as client,
        client.stream("GET", f"/v1/streams/{sid}/events", headers=headers) as r,
    ):
        assert r.status_code == 200
        async for ev in iter_sse(r):
            if isinstance(ev, SSEEvent):
                out.append(ev)
                live.set()


async def follow_ws(url: str, token: str, sid: str, out: list[dict[str, Any]], live: asyncio.Event) -> None:
    ws_url = url.replace("http://", "ws://") + "/v1/ws"
    async with websockets.connect(ws_url, additional_headers={"authorization": f"Bearer {token}"}) as ws:
        await ws.send(json.dumps({"type": "chat.resume", "id": "r", "stream_id": sid, "last_seq": 4}))
        while True:
            msg = json.loads(await ws.recv())
            out.append(msg)
            live.set()
            if msg["type"] in ("error", "done"):
                return


async def test_followers_learn_within_seconds_that_the_owner_died(tmp_path: Path) -> None:
    async with redis_prefix() as (_redis, prefix):
        env = {"REDIS_URL": REDIS_URL, "GATEWAY_REDIS_PREFIX": prefix, "GATEWAY_DEV_SIGNING_KEY": SIGNING_KEY}
        ports = free_port(), free_port()
        owner, token, owner_log = await start_gateway(tmp_path / "owner", ports[0], **env)
        other, _, other_log = await start_gateway(tmp_path / "other", ports[1], **env)
        try:
            a, b = (f"http://127.0.0.1:{p}" for p in ports)
            sid, last_id = await start_on_owner(a, token)
            sse: list[SSEEvent] = []
            frames: list[dict[str, Any]] = []
            flags = asyncio.Event(), asyncio.Event()
            followers = [
                asyncio.create_task(follow_sse(b, token, sid, last_id, sse, flags[0])),
                asyncio.create_task(follow_ws(b, token, sid, frames, flags[1])),
            ]
            async with asyncio.timeout(15):
                for f in flags:
                    await f.wait()  # both follow the live stream from the other instance
            owner.kill()
            await owner.wait()
            killed = time.monotonic()
            async with asyncio.timeout(15):
                await asyncio.gather(*followers)
            learnt = time.monotonic() - killed
        finally:
            for proc in (owner, other):
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
    logs = other_log.read_text()
    assert learnt < 8, f"followers learnt after {learnt:.1f}s\n{logs}"
    last = sse[-1]
    assert last.event == "error" and last.id is None, (owner_log.read_text(), logs)
    assert last.data["code"] == "stream_owner_lost" and last.data["stream_id"] is None
    assert last.data["retryable"] is True and "frame" not in last.data
    assert all(e.data["type"] == "delta" for e in sse[:-1]) and len(sse) > 1
    end = frames[-1]
    assert (end["type"], end["code"], end["stream_id"], end["id"]) == ("error", "stream_owner_lost", None, sid)
    assert any(f["type"] == "delta" for f in frames[:-1])
