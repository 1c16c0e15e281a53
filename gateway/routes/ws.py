"""The WebSocket endpoint: several streams multiplexed on one socket, JSON text frames both ways."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from gateway.auth import AuthError, Principal
from gateway.deps import bearer_token, get_services
from gateway.schemas import ChatStartFrame, InputTooLarge, describe, to_start_params
from gateway.services import Services
from sessions.log import ResumeTooOld
from sessions.manager import SessionError
from sessions.stream import StreamSession

log = logging.getLogger("gateway.ws")
router = APIRouter(tags=["websocket"])

# Close codes (documented in docs/protocol.md).
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN_ORIGIN = 4403
CLOSE_AUTH_TIMEOUT = 4408
CLOSE_TOKEN_EXPIRED = 4001
CLOSE_SERVICE_RESTART = 1012


class TokenBucket:
    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate, self.capacity, self.tokens, self.stamp = rate, capacity, capacity, now

    def take(self, now: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def origin_allowed(origin: str | None, allowed: list[str], host: str | None) -> bool:
    """No Origin (non-browser clients) is fine; a browser Origin must be our own host or on the allowlist."""
    if origin is None:
        return True
    origin = origin.rstrip("/")
    if origin in allowed:
        return True
    return host is not None and origin.split("://", 1)[-1] == host


def _subprotocol_token(ws: WebSocket) -> str | None:
    protos = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    if len(protos) >= 2 and protos[0] == "bearer":
        return protos[1]
    return None


class Connection:
    """One socket: reads frames, starts and cancels streams, forwards their events."""

    def __init__(self, ws: WebSocket, services: Services, user: Principal) -> None:
        self.ws = ws
        self.services = services
        self.user = user
        s = services.settings
        self.bucket = TokenBucket(s.gateway_ws_messages_per_second, s.gateway_ws_messages_per_second * 2, 0.0)
        self.forwarders: dict[str, tuple[StreamSession, asyncio.Task[None]]] = {}
        self.send_lock = asyncio.Lock()
        self.closed = False

    async def send_bytes_as_text(self, data: bytes) -> None:
        async with self.send_lock:
            await self.ws.send({"type": "websocket.send", "text": data.decode()})

    async def send_json(self, obj: dict[str, Any]) -> None:
        await self.send_bytes_as_text(orjson.dumps(obj))

    async def error(self, code: str, message: str, client_id: str | None = None, retryable: bool = False) -> None:
        await self.send_json(
            {
                "type": "error",
                "id": client_id,
                "stream_id": None,
                "code": code,
                "message": message,
                "retryable": retryable,
            }
        )

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        limit = self.services.settings.gateway_max_frame_bytes
        try:
            while True:
                msg = await self.ws.receive()
                if msg["type"] == "websocket.disconnect":
                    break
                if not self.bucket.take(loop.time()):
                    await self.error("rate_limited", "too many frames; slow down", retryable=True)
                    continue
                text = msg.get("text")
                if text is None:
                    await self.error("invalid_frame", "send JSON text frames, not binary")
                    continue
                if len(text) > limit:
                    await self.error("frame_too_large", f"frames are limited to {limit} bytes")
                    continue
                await self.handle(text)
        except WebSocketDisconnect:
            pass
        finally:
            self.closed = True
            for _session, task in list(self.forwarders.values()):
                task.cancel()
            for _session, task in list(self.forwarders.values()):
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def handle(self, text: str) -> None:
        try:
            frame = orjson.loads(text)
        except orjson.JSONDecodeError:
            await self.error("invalid_json", "the frame is not valid JSON")
            return
        if not isinstance(frame, dict):
            await self.error("invalid_frame", "a frame must be a JSON object")
            return
        kind = frame.get("type")
        client_id = frame.get("id") if isinstance(frame.get("id"), str) else None
        if kind == "chat.start":
            await self.start(frame, client_id)
        elif kind == "chat.cancel":
            await self.cancel(client_id)
        elif kind == "chat.resume":
            await self.resume(frame, client_id)
        elif kind == "ping":
            await self.send_json({"type": "pong", "id": client_id})
        elif kind is None:
            await self.error("invalid_frame", "the frame has no 'type'", client_id)
        else:
            await self.error("unknown_type", f"unknown frame type {str(kind)[:40]!r}", client_id)

    async def start(self, frame: dict[str, Any], client_id: str | None) -> None:
        s = self.services.settings
        try:
            parsed = ChatStartFrame.model_validate(frame)
        except ValidationError as exc:
            await self.error("invalid_frame", describe(exc), client_id)
            return
        if parsed.id in self.forwarders:
            await self.error("duplicate_id", f"a stream with id {parsed.id!r} is still running", parsed.id)
            return
        try:
            params = to_start_params(
                parsed, parsed.id, max_messages=s.gateway_max_messages, max_prompt_chars=s.gateway_max_prompt_chars
            )
            session = await self.services.sessions.start(self.user.user_id, params)
        except (SessionError, InputTooLarge) as exc:
            await self.error(exc.code, exc.message, parsed.id, getattr(exc, "retryable", False))
            return
        self.follow(parsed.id, session, 0)

    def follow(self, client_id: str, session: StreamSession, after_seq: int) -> None:
        self.services.sessions.attach(session)
        task = asyncio.create_task(self.forward(client_id, session, after_seq))
        self.forwarders[client_id] = (session, task)

    async def forward(self, client_id: str, session: StreamSession, after_seq: int) -> None:
        send = self.send_bytes_as_text
        try:
            async for batch in session.log.follow(after_seq):
                for entry in batch:
                    await send(entry.data)
        except (WebSocketDisconnect, OSError, RuntimeError):
            pass  # the socket went away; the session keeps generating for the resume window
        finally:
            self.services.sessions.detach(session)
            current = self.forwarders.get(client_id)
            if current is not None and current[0] is session:
                del self.forwarders[client_id]

    async def cancel(self, client_id: str | None) -> None:
        entry = self.forwarders.get(client_id or "")
        if entry is None:
            await self.error("stream_not_found", "no running stream with that id", client_id)
            return
        entry[0].cancel("client")

    async def resume(self, frame: dict[str, Any], client_id: str | None) -> None:
        stream_id, last_seq = frame.get("stream_id"), frame.get("last_seq", 0)
        if not isinstance(stream_id, str) or not isinstance(last_seq, int) or last_seq < 0:
            await self.error(
                "invalid_frame", "chat.resume needs 'stream_id' (string) and 'last_seq' (integer >= 0)", client_id
            )
            return
        try:
            session = self.services.sessions.get(stream_id, self.user.user_id)
            await session.log.check_cursor(last_seq)
        except SessionError as exc:
            await self.error(exc.code, exc.message, client_id)
            return
        except ResumeTooOld as exc:
            await self.error(exc.code, str(exc), client_id)
            return
        key = session.client_id or stream_id
        if key in self.forwarders:
            await self.error("duplicate_id", "that stream is already followed on this socket", client_id)
            return
        self.follow(key, session, last_seq)


async def authenticate(ws: WebSocket, services: Services) -> tuple[Principal, str | None]:
    token = bearer_token(ws)
    sub = _subprotocol_token(ws)
    if token is None and sub is not None:
        return await services.auth.verify(sub), "bearer"
    if token is None:
        raise AuthError("missing_token", "authenticate with a bearer token")
    return await services.auth.verify(token), None


@router.websocket("/v1/ws")
async def websocket_endpoint(ws: WebSocket) -> None:
    services = get_services(ws)
    if not origin_allowed(ws.headers.get("origin"), services.settings.cors_origins, ws.headers.get("host")):
        await ws.close(CLOSE_FORBIDDEN_ORIGIN, "origin not allowed")
        return
    if services.sessions.draining:
        await ws.close(CLOSE_SERVICE_RESTART, "server restarting")
        return
    try:
        user, subprotocol = await authenticate(ws, services)
    except AuthError as exc:
        # Accept, then close: a close code before the handshake would reach the client as a bare HTTP 403.
        await ws.accept(subprotocol="bearer" if _subprotocol_token(ws) else None)
        await ws.close(CLOSE_UNAUTHORIZED, exc.code)
        return
    await ws.accept(subprotocol=subprotocol)
    conn = Connection(ws, services, user)
    await conn.run()
    if ws.application_state == WebSocketState.CONNECTED and ws.client_state == WebSocketState.CONNECTED:
        with contextlib.suppress(RuntimeError, OSError):
            await ws.close()
