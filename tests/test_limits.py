"""Per-user limits: each one is hit and reported with its code, and nothing else is disturbed: not the user's
other streams on the socket, not other users."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import websockets

from gateway.auth import DEV_USER_ID
from sessions.errors import GatewayError
from sessions.limits import MemoryUserLimiter
from tests.conftest import Live
from tests.support.clients import user_msg

Frames = list[dict[str, Any]]


def start_frame(cid: str, prompt: str, **extra: Any) -> str:
    return json.dumps({"type": "chat.start", "id": cid, "model": "mock", "messages": user_msg(prompt), **extra})


class Socket:
    """A WebSocket client that sorts frames into stream events (by client id) and frame errors."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.streams: dict[str, Frames] = {}
        self.errors: Frames = []
        self.other: Frames = []

    async def read_until(self, done: Callable[[Socket], bool], timeout: float = 15) -> None:
        async with asyncio.timeout(timeout):
            while not done(self):
                f = json.loads(await self.ws.recv())
                if f.get("stream_id"):
                    self.streams.setdefault(f["id"], []).append(f)
                elif f["type"] == "error":
                    self.errors.append(f)
                else:
                    self.other.append(f)

    def finished(self, *ids: str) -> Callable[[Socket], bool]:
        return lambda s: all(s.streams.get(i) and s.streams[i][-1]["type"] in ("done", "error") for i in ids)

    def deltas(self, cid: str) -> int:
        return sum(f["type"] == "delta" for f in self.streams.get(cid, []))


def assert_complete(sock: Socket, cid: str, tokens: int) -> None:
    evs = sock.streams[cid]
    seqs = [e["seq"] for e in evs]
    assert seqs == list(range(1, len(seqs) + 1))
    assert evs[-1]["type"] == "done" and evs[-1]["finish_reason"] == "stop", evs[-1]
    assert sock.deltas(cid) == tokens


async def connect(gw: Live, token: str | None = None) -> Any:
    return await websockets.connect(f"{gw.ws_url}/v1/ws", additional_headers=gw.headers(token))


def other_user(gw: Live) -> str:
    return str(gw.services.auth.mint_dev_token(user_id=str(uuid.uuid4())))


async def test_concurrent_streams(live_factory: Callable[..., Any]) -> None:
    gw: Live = await live_factory(gateway_max_concurrent_streams=2)
    async with await connect(gw) as a_ws, await connect(gw, other_user(gw)) as b_ws:
        a, b = Socket(a_ws), Socket(b_ws)
        await a_ws.send(start_frame("a1", "one [[mock tokens=40 delay_ms=10]]"))
        await a_ws.send(start_frame("a2", "two [[mock tokens=40 delay_ms=10]]"))
        await a.read_until(lambda s: s.deltas("a1") > 0 and s.deltas("a2") > 0)
        await a_ws.send(start_frame("a3", "three [[mock tokens=5]]"))
        await b_ws.send(start_frame("b1", "b [[mock tokens=10]]"))  # another user is not affected
        async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
            r = await client.post(
                "/v1/chat/stream", headers=gw.headers(), json={"model": "mock", "messages": user_msg("http")}
            )
            assert (r.status_code, r.json()["error"]["code"]) == (429, "too_many_streams")
        await a.read_until(a.finished("a1", "a2"))
        await b.read_until(b.finished("b1"))
    assert [(e["code"], e["id"], e["retryable"]) for e in a.errors] == [("too_many_streams", "a3", True)]
    assert "a3" not in a.streams
    assert_complete(a, "a1", 40)
    assert_complete(a, "a2", 40)
    assert_complete(b, "b1", 10)
    assert not b.errors
    # Ended streams free their slots.
    await asyncio.sleep(0.05)
    assert gw.services.sessions.limiter.running(DEV_USER_ID) == 0
    async with await connect(gw) as a_ws:
        a = Socket(a_ws)
        await a_ws.send(start_frame("a4", "again [[mock tokens=3]]"))
        await a.read_until(a.finished("a4"))
        assert_complete(a, "a4", 3)


async def test_starts_per_minute(live_factory: Callable[..., Any]) -> None:
    gw: Live = await live_factory(gateway_starts_per_minute=3)
    async with await connect(gw) as a_ws, await connect(gw, other_user(gw)) as b_ws:
        a, b = Socket(a_ws), Socket(b_ws)
        await a_ws.send(start_frame("long", "long [[mock tokens=40 delay_ms=10]]"))
        for i in range(2):
            await a_ws.send(start_frame(f"s{i}", "short [[mock tokens=2]]"))
        await a.read_until(a.finished("s0", "s1"))
        await a_ws.send(start_frame("s2", "one too many [[mock tokens=2]]"))
        for i in range(3):
            await b_ws.send(start_frame(f"b{i}", "b [[mock tokens=2]]"))
        await a.read_until(lambda s: bool(s.errors))
        async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
            r = await client.post(
                "/v1/chat/stream", headers=gw.headers(), json={"model": "mock", "messages": user_msg("http")}
            )
            assert (r.status_code, r.json()["error"]["code"]) == (429, "rate_limited")
        await a.read_until(a.finished("long"))
        await b.read_until(b.finished("b0", "b1", "b2"))
    assert [(e["code"], e["id"]) for e in a.errors] == [("rate_limited", "s2")]
    assert_complete(a, "long", 40)
    assert not b.errors and all(b.streams[f"b{i}"][-1]["type"] == "done" for i in range(3))


async def test_messages_per_socket_per_second(live_factory: Callable[..., Any]) -> None:
    gw: Live = await live_factory(gateway_ws_messages_per_second=5)
    async with await connect(gw) as a_ws, await connect(gw) as a2_ws, await connect(gw, other_user(gw)) as b_ws:
        a, a2, b = Socket(a_ws), Socket(a2_ws), Socket(b_ws)
        await a_ws.send(start_frame("busy", "flood [[mock tokens=30 delay_ms=10]]"))
        for i in range(40):
            await a_ws.send(json.dumps({"type": "ping", "id": f"p{i}"}))
        for sock, ws in ((a2, a2_ws), (b, b_ws)):  # the user's other socket, and another user
            for i in range(5):
                await ws.send(json.dumps({"type": "ping", "id": f"q{i}"}))
            await sock.read_until(lambda s: len(s.other) == 5)
        await a.read_until(a.finished("busy"))
    limited = [e for e in a.errors if e["code"] == "rate_limited"]
    assert len(limited) >= 25 and all(e["retryable"] for e in limited)
    assert len(a.other) + len(limited) == 40  # every frame answered, either way
    assert_complete(a, "busy", 30)
    assert not a2.errors and not b.errors


async def test_frame_and_request_size(live_factory: Callable[..., Any]) -> None:
    gw: Live = await live_factory(gateway_max_frame_bytes=4096)
    async with await connect(gw) as a_ws:
        a = Socket(a_ws)
        await a_ws.send(start_frame("ok", "fine [[mock tokens=20 delay_ms=5]]"))
        await a_ws.send(start_frame("big", "x" * 5000))
        await a_ws.send(start_frame("wide", "€" * 1500))  # 1500 characters, 4500 bytes
        await a_ws.send(start_frame("fits", "fits " + "y" * 3000 + " [[mock tokens=2]]"))
        await a.read_until(lambda s: s.finished("ok", "fits")(s) and len(s.errors) == 2)
    assert [e["code"] for e in a.errors] == ["frame_too_large", "frame_too_large"]
    assert_complete(a, "ok", 20)
    assert_complete(a, "fits", 2)
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
        body = {"model": "mock", "messages": user_msg("z" * 5000)}
        r = await client.post("/v1/chat/stream", headers=gw.headers(), json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (413, "request_too_large")

        async def chunks() -> Any:  # no Content-Length: the limit holds while reading
            for _ in range(10):
                yield b" " * 1000

        r = await client.post("/v1/chat/stream", headers=gw.headers(), content=chunks())
        assert (r.status_code, r.json()["error"]["code"]) == (413, "request_too_large")


@pytest.mark.parametrize(
    ("overrides", "messages", "code"),
    [
        ({"gateway_max_messages": 3}, [{"role": "user", "content": f"m{i}"} for i in range(4)], "too_many_messages"),
        ({"gateway_max_prompt_chars": 100}, user_msg("p" * 101), "prompt_too_large"),
        (
            {"gateway_max_prompt_chars": 100},
            [{"role": "user", "content": [{"type": "text", "text": "t" * 60}, {"type": "text", "text": "t" * 60}]}],
            "prompt_too_large",
        ),
    ],
)
async def test_message_count_and_prompt_size(
    live_factory: Callable[..., Any], overrides: dict[str, Any], messages: Frames, code: str
) -> None:
    gw: Live = await live_factory(**overrides)
    async with await connect(gw) as a_ws:
        a = Socket(a_ws)
        await a_ws.send(start_frame("ok", "ok [[mock tokens=15 delay_ms=5]]"))
        await a_ws.send(json.dumps({"type": "chat.start", "id": "no", "model": "mock", "messages": messages}))
        await a.read_until(lambda s: s.finished("ok")(s) and bool(s.errors))
    assert [(e["code"], e["id"]) for e in a.errors] == [(code, "no")]
    assert_complete(a, "ok", 15)
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
        r = await client.post("/v1/chat/stream", headers=gw.headers(), json={"model": "mock", "messages": messages})
        assert (r.status_code, r.json()["error"]["code"]) == (413, code)
    assert gw.services.sessions.limiter.running(DEV_USER_ID) == 0  # refused input never takes a slot


async def test_memory_limiter_windows() -> None:
    now = [0.0]
    lim = MemoryUserLimiter(max_concurrent=2, starts_per_minute=3, clock=lambda: now[0])
    await lim.admit("u")
    await lim.admit("u")
    with pytest.raises(GatewayError) as info:
        await lim.admit("u")
    assert info.value.code == "too_many_streams"
    await lim.admit("v")  # per user
    lim.release("u")
    now[0] = 10.0
    await lim.admit("u")  # the third start this minute (the refused one did not count)
    lim.release("u")
    with pytest.raises(GatewayError) as info:
        await lim.admit("u")
    assert info.value.code == "rate_limited" and info.value.retry_after_s == pytest.approx(50.0)
    now[0] = 60.5  # the first two starts left the window
    await lim.admit("u")
    assert lim.running("u") == 2 and lim.running("v") == 1
    lim.release("u")
    lim.release("u")
    lim.release("u")  # an extra release never goes negative
    assert lim.running("u") == 0
