"""The WebSocket handshake: who opens a socket, and whether they may (the origin, the drain, the credential in
the handshake or in a first `auth` frame). A refusal closes the socket with the error table's code for its kind,
the error code as reason."""

from __future__ import annotations

import asyncio
import contextlib

import orjson
from fastapi import WebSocket
from starlette.websockets import WebSocketState

from gateway.auth import Principal
from gateway.deps import bearer_token, redeem_ticket, require_user
from gateway.errors import TABLE
from gateway.services import Services
from sessions.errors import GatewayError, fail

CLOSE_AUTH_TIMEOUT = 4408
CLOSE_POLICY = 1008  # a refusal whose kind has no close code of its own


def origin_allowed(origin: str | None, allowed: list[str], host: str | None) -> bool:
    """No Origin (non-browser clients) is fine; a browser Origin must be our own host or on the allowlist."""
    if origin is None:
        return True
    origin = origin.rstrip("/")
    if origin in allowed:
        return True
    return host is not None and origin.split("://", 1)[-1] == host


def subprotocol_token(ws: WebSocket) -> str | None:
    protos = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    if len(protos) >= 2 and protos[0] == "bearer":
        return protos[1]
    return None


def frame_too_large(text: str, limit: int) -> bool:
    # Characters first (cheap); bytes only when it could matter, since a character may take up to 4 bytes.
    return len(text) > limit or (len(text) * 4 > limit and len(text.encode()) > limit)


def auth_ok(user: Principal, client_id: object = None) -> bytes:
    return orjson.dumps({"type": "auth.ok", "user_id": user.user_id, "expires_at": user.expires_at, "id": client_id})


async def close_refused(ws: WebSocket, err: GatewayError) -> None:
    """Close with the table's code for the error's kind. Accepted first if need be: a close before the handshake
    completes would reach the client as a bare HTTP 403."""
    if ws.application_state == WebSocketState.CONNECTING:
        await ws.accept(subprotocol="bearer" if subprotocol_token(ws) else None)
    with contextlib.suppress(RuntimeError, OSError):
        await ws.close(TABLE[err.kind].close or CLOSE_POLICY, err.code)


async def authenticate(ws: WebSocket, services: Services) -> tuple[Principal | None, str | None]:
    """Who is connecting, from the handshake: `?ticket=`, the Authorization header, or the `bearer` subprotocol.

    Returns (None, subprotocol) when the handshake carries no credential: the first frame must then be `auth`.
    Whenever the client offered `bearer`, we answer with it, or browsers fail the handshake.
    """
    offered = subprotocol_token(ws)
    subprotocol = "bearer" if offered is not None else None
    ticket = ws.query_params.get("ticket")
    if ticket:
        return await redeem_ticket(services, ticket), subprotocol
    token = bearer_token(ws)
    if token is not None:
        return await services.auth.verify(token), subprotocol
    if offered is not None:
        return await services.auth.verify(offered), subprotocol
    return None, subprotocol


async def handshake(ws: WebSocket, services: Services) -> tuple[Principal | None, str | None]:
    """The user (None: to come in an `auth` frame) and the subprotocol to answer with; raises the refusal."""
    if not origin_allowed(ws.headers.get("origin"), services.settings.cors_origins, ws.headers.get("host")):
        raise fail("origin_forbidden", "this page's origin may not open sockets here")
    if services.sessions.draining:
        raise fail("draining", "the server is restarting; reconnect shortly")
    user, subprotocol = await authenticate(ws, services)
    return (require_user(user) if user is not None else None), subprotocol


async def first_frame_auth(ws: WebSocket, services: Services) -> Principal | None:
    """Wait a few seconds for `{"type":"auth","token":...}`; close 4408 if none comes, with the error's code if
    it is refused."""
    settings = services.settings
    try:
        async with asyncio.timeout(settings.gateway_ws_auth_timeout_s):
            msg = await ws.receive()
    except TimeoutError:
        await ws.close(CLOSE_AUTH_TIMEOUT, "auth_timeout")
        return None
    if msg["type"] == "websocket.disconnect":
        return None
    text = msg.get("text")
    frame: object = None
    if text is not None and not frame_too_large(text, settings.gateway_max_frame_bytes):
        with contextlib.suppress(orjson.JSONDecodeError):
            frame = orjson.loads(text)
    if not isinstance(frame, dict) or frame.get("type") != "auth":
        frame = {}
    token = frame.get("token")
    try:
        if not isinstance(token, str) or not token:
            raise fail("missing_token", 'the first frame must be {"type": "auth", "token": …}')
        user = require_user(await services.auth.verify(token))
    except GatewayError as exc:
        await close_refused(ws, exc)
        return None
    await ws.send_text(auth_ok(user, frame.get("id")).decode())
    return user
