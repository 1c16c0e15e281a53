"""What a fuzzing client found at the edges of the wire, checked as that client sees it: refused frames carry
their own id, bad cursors are refused, a foreign Origin gets 4403, a body cut short is no server error, every
405 says what is allowed, HTTP messages speak of bodies; and Supabase's service-role key is the service role."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
import websockets

from tests.conftest import Live
from tests.support.clients import collect_sse, user_msg
from tests.support.jwks import LEGACY_SECRET

LONG = "[[mock tokens=400 delay_ms=5]]"


async def frames_until(ws: Any, done: Callable[[dict[str, Any]], bool], timeout: float = 10) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while True:
            out.append(json.loads(await ws.recv()))
            if done(out[-1]):
                return out


def start(cid: str, prompt: str = "hi [[mock tokens=3]]") -> str:
    return json.dumps({"type": "chat.start", "id": cid, "model": "mock", "messages": user_msg(prompt)})


# -- WebSocket frames ---------------------------------------------------------------------------------------------


async def test_a_rate_limited_frame_is_refused_with_its_own_id(live_factory: Callable[..., Any]) -> None:
    gw: Live = await live_factory(gateway_ws_messages_per_second=1.0)
    async with websockets.connect(f"{gw.ws_url}/v1/ws", additional_headers=gw.headers()) as ws:
        for n in range(4):  # a burst of two is allowed, then one a second
            await ws.send(json.dumps({"type": "ping", "id": f"p{n}"}))
        got = await frames_until(ws, lambda f: f.get("id") == "p3")
    by_id = {f["id"]: f for f in got}
    assert by_id["p0"]["type"] == by_id["p1"]["type"] == "pong"
    for n in (2, 3):
        refused = by_id[f"p{n}"]
        assert (refused["type"], refused["code"], refused["frame"], refused["stream_id"]) == (
            "error",
            "rate_limited",
            "ping",
            None,
        )
        assert refused["retryable"] is True and 0 < refused["retry_after_s"] <= 1


async def test_a_duplicate_start_is_refused_and_the_running_stream_carries_on(live: Live) -> None:
    async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=live.headers()) as ws:
        await ws.send(start("c1", f"long {LONG}"))
        frames = await frames_until(ws, lambda f: f["type"] == "delta")
        await ws.send(start("c1"))
        await ws.send(json.dumps({"type": "chat.start", "id": "c2", "model": "mock"}))  # no messages
        frames += await frames_until(
            ws, lambda f: f.get("id") == "c1" and f["type"] in ("done", "error") and "seq" in f
        )
    refusals = [f for f in frames if f["type"] == "error" and "seq" not in f]
    assert [(f["id"], f["code"], f["frame"]) for f in refusals] == [
        ("c1", "duplicate_id", "chat.start"),
        ("c2", "invalid_frame", "chat.start"),
    ]
    assert all(f["stream_id"] is None for f in refusals)
    stream = [f for f in frames if f.get("id") == "c1" and "seq" in f]
    assert stream[-1]["type"] == "done" and stream[-1]["finish_reason"] == "stop"  # never failed
    assert sum(f["type"] == "delta" for f in stream) == 400


async def test_a_foreign_origin_is_closed_with_4403(live: Live) -> None:
    async with websockets.connect(
        f"{live.ws_url}/v1/ws", additional_headers={**live.headers(), "origin": "https://elsewhere.example"}
    ) as ws:
        with pytest.raises(websockets.ConnectionClosed) as info:
            await ws.recv()
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4403, "origin_forbidden")
    # The gateway's own page is welcome.
    own = live.url.replace("http://", "")
    async with websockets.connect(
        f"{live.ws_url}/v1/ws", additional_headers={**live.headers(), "origin": f"http://{own}"}
    ) as ws:
        await ws.send(json.dumps({"type": "ping", "id": "ok"}))
        assert json.loads(await ws.recv()) == {"type": "pong", "id": "ok"}


# -- HTTP ---------------------------------------------------------------------------------------------------------


async def test_a_cursor_that_is_not_one_is_refused(live: Live) -> None:
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        events = await live.chat(client, "cursor [[mock tokens=4]]")
        sid = events[0].data["stream_id"]
        url = f"/v1/streams/{sid}/events"
        bad = [
            ({"last-event-id": "st_someone_else:2"}, {}),
            ({"last-event-id": f"{sid}:two"}, {}),
            ({"last-event-id": f"{sid}:-1"}, {}),
            ({"last-event-id": sid}, {}),
            ({}, {"after": "x"}),
            ({}, {"after": "-3"}),
        ]
        for headers, params in bad:
            r = await client.get(url, headers={**live.headers(), **headers}, params=params)
            assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_cursor"), (headers, params)
        rest = await collect_sse(client, "GET", url, headers={**live.headers(), "last-event-id": f"{sid}:4"})
        assert [e.data["seq"] for e in rest] == [e.data["seq"] for e in events[4:]]
        again = await collect_sse(client, "GET", url, headers=live.headers(), params={"after": "5"})
        assert [e.data["seq"] for e in again] == [e.data["seq"] for e in events[5:]]


async def test_every_405_says_which_methods_are_allowed(live: Live) -> None:
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        for method, path, allow in [
            ("PATCH", "/v1/keys/openai", "DELETE, GET, PUT"),
            ("POST", "/v1/keys", "GET"),
            ("GET", "/v1/chat/stream", "POST"),
            ("PUT", "/healthz", "GET"),
            ("DELETE", "/v1/budget", "GET, PUT"),
        ]:
            r = await client.request(method, path, headers=live.headers())
            assert (r.status_code, r.headers.get("allow"), r.json()["error"]["code"]) == (
                405,
                allow,
                "method_not_allowed",
            ), path
        r = await client.get("/v1/chat/completions", headers=live.headers())
        assert (r.status_code, r.headers["allow"], r.json()["error"]["type"]) == (405, "POST", "invalid_request_error")


async def test_http_errors_speak_of_the_body(live: Live) -> None:
    async with httpx.AsyncClient(base_url=live.url, headers=live.headers(), timeout=10) as client:
        for body in ("[]", '"text"', "{}"):
            r = await client.post("/v1/chat/stream", content=body, headers={"content-type": "application/json"})
            assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
            assert "frame" not in r.text
        r = await client.post("/v1/chat/stream", content="[]", headers={"content-type": "application/json"})
        assert r.json()["error"]["message"].startswith("body:")


async def test_a_client_that_leaves_while_sending_its_body_is_no_server_error(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway.http")
    host, port = live.url.removeprefix("http://").split(":")
    head = (
        f"POST /v1/chat/stream HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {live.token}\r\n"
        "content-type: application/json\r\ncontent-length: 100000\r\n\r\n"
    )
    for _ in range(3):
        with socket.create_connection((host, int(port))) as s:
            s.sendall(head.encode() + b'{"model": "mo')
            await asyncio.sleep(0.1)
    async with asyncio.timeout(5):
        while sum("disconnected while sending its body" in r.getMessage() for r in caplog.records) < 3:
            await asyncio.sleep(0.05)
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not loud, [(r.name, r.getMessage()) for r in loud]
    assert all(r.levelno == logging.DEBUG for r in caplog.records if "its body" in r.getMessage())


# -- the project's service-role key ---------------------------------------------------------------------------


def service_key(secret: str = LEGACY_SECRET, **claims: Any) -> str:
    """A `service_role` key as Supabase issues it: no `sub`, no `aud`, issuer "supabase"."""
    now = int(time.time())
    body = {"iss": "supabase", "ref": "abcdefghijklmnop", "role": "service_role", "iat": now, "exp": now + 3600 * 24}
    return jwt.encode({**body, **claims}, secret, algorithm="HS256")


async def test_the_service_role_key_reads_everyones_usage_and_starts_nothing(live_factory: Callable[..., Any]) -> None:
    gw: Live = await live_factory(supabase_jwt_secret=LEGACY_SECRET)
    key = {"authorization": f"Bearer {service_key()}"}
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
        await gw.chat(client, "billed [[mock tokens=3]]")
        usage = await client.get("/v1/usage", headers=key)
        assert usage.status_code == 200 and usage.json()["user_id"] is None and usage.json()["totals"]["streams"] >= 1
        one = await client.get("/v1/usage/streams", headers=key, params={"user_id": str(uuid.uuid4())})
        assert one.status_code == 200 and one.json()["data"] == []
        r = await client.post("/v1/chat/stream", headers=key, json={"model": "mock", "messages": user_msg("x")})
        assert (r.status_code, r.json()["error"]["code"]) == (403, "user_required")
        for token, code in [
            (service_key(secret="not-the-project-secret-0123456789abcdef"), "invalid_signature"),
            (service_key(exp=int(time.time()) - 60), "token_expired"),
            (service_key(iss="https://other.example/auth/v1"), "invalid_issuer"),
        ]:
            r = await client.get("/v1/usage", headers={"authorization": f"Bearer {token}"})
            assert (r.status_code, r.json()["error"]["code"]) == (401, code)
    with pytest.raises(websockets.ConnectionClosed) as info:
        async with websockets.connect(f"{gw.ws_url}/v1/ws", additional_headers=key) as ws:
            await ws.recv()
    assert info.value.rcvd is not None and (info.value.rcvd.code, info.value.rcvd.reason) == (4403, "user_required")
