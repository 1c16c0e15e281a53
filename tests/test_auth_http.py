"""Authentication at the edge: HTTP statuses, WebSocket close codes, every way a socket can authenticate,
and a socket that outlives its token."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import websockets

from tests.conftest import Live
from tests.support.clients import user_msg
from tests.support.jwks import IdentityProvider, identity_provider, new_key, raw_token


@pytest.fixture
async def idp() -> AsyncIterator[IdentityProvider]:
    async with identity_provider("ES256", "RS256") as server:
        yield server


@pytest.fixture
async def gw(live_factory: Callable[..., Any], idp: IdentityProvider) -> Live:
    live: Live = await live_factory(supabase_url=idp.url, gateway_ws_auth_timeout_s=0.5, gateway_drain_deadline_s=0.2)
    return live


async def close_of(ws: Any) -> tuple[int, str]:
    """Read until the server closes; the close code and reason."""
    with pytest.raises(websockets.ConnectionClosed) as info:
        async with asyncio.timeout(10):
            while True:
                await ws.recv()
    rcvd = info.value.rcvd
    assert rcvd is not None, "the server did not send a close frame"
    return rcvd.code, rcvd.reason


async def roundtrip(ws: Any) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "ping", "id": "p"}))
    async with asyncio.timeout(5):
        while True:
            frame: dict[str, Any] = json.loads(await ws.recv())
            if frame["type"] == "pong":
                return frame


async def test_supabase_tokens_work_over_http_and_websocket(gw: Live, idp: IdentityProvider) -> None:
    for key in list(idp.keys.values()):
        token = idp.sign(key=key)
        async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
            assert (await client.get("/v1/models", headers=gw.headers(token))).status_code == 200
        async with websockets.connect(f"{gw.ws_url}/v1/ws", additional_headers=gw.headers(token)) as ws:
            assert (await roundtrip(ws))["id"] == "p"


async def test_refusals_have_stable_statuses_and_close_codes(gw: Live, idp: IdentityProvider) -> None:
    now = int(time.time())
    cases = [
        (idp.sign(idp.claims(exp=now - 30)), 401, "token_expired"),
        (idp.sign(idp.claims(nbf=now + 300)), 401, "token_not_yet_valid"),
        (idp.sign(idp.claims(aud="other")), 401, "invalid_audience"),
        (idp.sign(idp.claims(iss="https://evil.example/auth/v1")), 401, "invalid_issuer"),
        (raw_token({"alg": "none"}, idp.claims()), 401, "invalid_algorithm"),
        (idp.sign(key=new_key("ES256")), 401, "unknown_key"),
        (idp.sign(key=new_key(idp.current.alg, kid=idp.current.kid)), 401, "invalid_signature"),
        (idp.sign(idp.claims(role="anon")), 403, "anon_refused"),
    ]
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
        assert (await client.get("/v1/models", headers=gw.headers(idp.sign()))).status_code == 200
        for token, status, code in cases:
            r = await client.post("/v1/chat/stream", headers=gw.headers(token), json={})
            assert (r.status_code, r.json()["error"]["code"]) == (status, code)
            if status == 401:
                assert r.headers["www-authenticate"] == "Bearer"
    for token, _, code in cases:
        async with websockets.connect(f"{gw.ws_url}/v1/ws", additional_headers=gw.headers(token)) as ws:
            assert await close_of(ws) == (4401, code)
        async with websockets.connect(f"{gw.ws_url}/v1/ws", subprotocols=["bearer", token]) as ws:  # type: ignore[list-item]
            assert ws.subprotocol == "bearer"  # answered even when refusing, or browsers fail the handshake
            assert await close_of(ws) == (4401, code)


async def test_websocket_subprotocol_and_first_frame_auth(gw: Live, idp: IdentityProvider) -> None:
    token = idp.sign()
    async with websockets.connect(f"{gw.ws_url}/v1/ws", subprotocols=["bearer", token]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "bearer"
        await roundtrip(ws)
    async with websockets.connect(f"{gw.ws_url}/v1/ws") as ws:
        await ws.send(json.dumps({"type": "auth", "token": token, "id": "a1"}))
        ok = json.loads(await ws.recv())
        claims = json.loads(json.dumps(__import__("jwt").decode(token, options={"verify_signature": False})))
        assert ok == {"type": "auth.ok", "id": "a1", "user_id": claims["sub"], "expires_at": claims["exp"]}
        await ws.send(
            json.dumps({"type": "chat.start", "id": "c", "model": "mock", "messages": user_msg("q [[mock tokens=3]]")})
        )
        frames = [json.loads(await ws.recv()) for _ in range(6)]
        assert frames[-1]["type"] == "done"


async def test_websocket_without_credentials(gw: Live, idp: IdentityProvider) -> None:
    async with websockets.connect(f"{gw.ws_url}/v1/ws") as ws:  # nothing sent: times out
        assert await close_of(ws) == (4408, "auth_timeout")
    async with websockets.connect(f"{gw.ws_url}/v1/ws") as ws:  # something else first
        await ws.send(json.dumps({"type": "ping"}))
        assert await close_of(ws) == (4401, "missing_token")
    async with websockets.connect(f"{gw.ws_url}/v1/ws") as ws:  # a refused token in the auth frame
        await ws.send(json.dumps({"type": "auth", "token": idp.sign(idp.claims(role="anon"))}))
        assert await close_of(ws) == (4401, "anon_refused")


async def test_socket_closed_with_4001_when_its_token_expires(gw: Live, idp: IdentityProvider) -> None:
    token = idp.sign(idp.claims(exp=int(time.time()) + 2))
    async with websockets.connect(f"{gw.ws_url}/v1/ws", additional_headers=gw.headers(token)) as ws:
        await ws.send(
            json.dumps(
                {
                    "type": "chat.start",
                    "id": "long",
                    "model": "mock",
                    "messages": user_msg("q [[mock tokens=2000 delay_ms=5]]"),
                }
            )
        )
        started = time.monotonic()
        code, reason = await close_of(ws)
    assert (code, reason) == (4001, "token_expired")
    assert time.monotonic() - started < 8
    # The stream itself lives on for the resume window, as after any disconnect.
    assert gw.services.sessions.live_count() == 1


async def test_fresh_token_in_auth_frame_keeps_the_socket(gw: Live, idp: IdentityProvider) -> None:
    sub = str(uuid.uuid4())
    short = idp.sign(idp.claims(sub=sub, exp=int(time.time()) + 2))
    async with websockets.connect(f"{gw.ws_url}/v1/ws", additional_headers=gw.headers(short)) as ws:
        # Another user's token is refused; the socket keeps its own.
        await ws.send(json.dumps({"type": "auth", "token": idp.sign(), "id": "x"}))
        assert json.loads(await ws.recv())["code"] == "user_mismatch"
        await ws.send(json.dumps({"type": "auth", "token": idp.sign(idp.claims(exp=1)), "id": "y"}))
        assert json.loads(await ws.recv())["code"] == "token_expired"
        fresh = idp.sign(idp.claims(sub=sub, exp=int(time.time()) + 3600))
        await ws.send(json.dumps({"type": "auth", "token": fresh, "id": "z"}))
        ok = json.loads(await ws.recv())
        assert ok["type"] == "auth.ok" and ok["user_id"] == sub and ok["expires_at"] > time.time() + 3000
        await asyncio.sleep(3)  # past the first token's expiry
        assert (await roundtrip(ws))["type"] == "pong"


async def test_dev_token_flow_still_works(live: Live) -> None:
    """`python -m gateway` prints a development token; it keeps working next to Supabase verification."""
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        assert (await client.get("/v1/models", headers=live.headers())).status_code == 200
        other = live.services.auth.mint_dev_token(user_id=str(uuid.uuid4()))
        assert (await client.get("/v1/models", headers=live.headers(other))).status_code == 200
        # Without SUPABASE_URL, an asymmetric token has no verifier: refused as an algorithm.
        async with identity_provider() as stray:
            r = await client.get("/v1/models", headers=live.headers(stray.sign()))
            assert (r.status_code, r.json()["error"]["code"]) == (401, "invalid_algorithm")
