"""The WebSocket endpoint: several streams multiplexed on one socket, JSON text frames both ways."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from gateway.auth import Principal
from gateway.deps import bearer_token, redeem_ticket, require_user, services_of
from gateway.errors import TABLE
from gateway.schemas import ChatStartFrame, describe, to_start_params
from gateway.services import Services
from sessions.errors import GatewayError, fail
from sessions.follow import FollowedStream

log = logging.getLogger("gateway.ws")
router = APIRouter(tags=["websocket"])

# Close codes (documented in docs/protocol.md); those of refused handshakes come from the error table.
CLOSE_AUTH_TIMEOUT = 4408
CLOSE_TOKEN_EXPIRED = 4001


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

    def wait_s(self) -> float:
        """How long until the next frame would be taken."""
        return max(0.0, (1 - self.tokens) / self.rate)


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


def frame_too_large(text: str, limit: int) -> bool:
    # Characters first (cheap); bytes only when it could matter, since a character may take up to 4 bytes.
    return len(text) > limit or (len(text) * 4 > limit and len(text.encode()) > limit)


def auth_ok(user: Principal) -> dict[str, Any]:
    return {"type": "auth.ok", "user_id": user.user_id, "expires_at": user.expires_at}


class Connection:
    """One socket: reads frames, starts and cancels streams, forwards their events."""

    def __init__(self, ws: WebSocket, services: Services, user: Principal, *, batch: bool = False) -> None:
        self.ws = ws
        # `?batch=1`: events of a stream that are ready together go out as one message, a JSON array
        # (one socket write instead of one per token when tokens arrive in bursts).
        self.batch = batch
        self.services = services
        self.user = user
        s = services.settings
        self.bucket = TokenBucket(s.gateway_ws_messages_per_second, s.gateway_ws_messages_per_second * 2, 0.0)
        self.forwarders: dict[str, tuple[FollowedStream, asyncio.Task[None]]] = {}
        self.send_lock = asyncio.Lock()
        self.closed = False
        self.close_code: int | None = None

    async def send_bytes_as_text(self, data: bytes) -> None:
        async with self.send_lock:
            await self.ws.send({"type": "websocket.send", "text": data.decode()})

    async def send_json(self, obj: dict[str, Any]) -> None:
        await self.send_bytes_as_text(orjson.dumps(obj))

    async def error(self, code: str, message: str, client_id: str | None = None, frame: str | None = None) -> None:
        await self.refuse(fail(code, message), client_id, frame)

    async def refuse(self, err: GatewayError, client_id: str | None, frame: str | None) -> None:
        """An `error` for one frame: it carries the frame's own id and type; nothing else changed."""
        body: dict[str, Any] = {
            "type": "error",
            "stream_id": None,
            "id": client_id,
            "frame": frame,
            "code": err.code,
            "message": err.message,
            "retryable": err.retryable,
        }
        if err.retry_after_s is not None:
            body["retry_after_s"] = round(err.retry_after_s, 3)
        await self.send_json(body)

    async def close(self, code: int, reason: str) -> None:
        """Close from our side (token expired); the read loop then sees the disconnect and cleans up."""
        if self.close_code is not None:
            return
        self.close_code = code
        async with self.send_lock:
            with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
                await self.ws.close(code, reason)

    async def watch_expiry(self) -> None:
        """Close with 4001 once the token expires, unless an `auth` frame brought a fresh one meanwhile."""
        while self.close_code is None:
            expires_at = self.user.expires_at
            if expires_at is None:
                return
            left = expires_at - time.time()
            if left <= 0:
                log.info("socket token expired", extra={"user_id": self.user.user_id})
                await self.close(CLOSE_TOKEN_EXPIRED, "token_expired")
                return
            await asyncio.sleep(min(left, 3600.0))

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        limit = self.services.settings.gateway_max_frame_bytes
        watcher = asyncio.create_task(self.watch_expiry())
        try:
            while True:
                msg = await self.ws.receive()
                if msg["type"] == "websocket.disconnect":
                    break
                if self.close_code is not None:
                    continue  # closing: ignore what is still in flight
                allowed = self.bucket.take(loop.time())
                text = msg.get("text")
                if text is None:
                    await self.error("invalid_frame", "send JSON text frames, not binary")
                    continue
                if frame_too_large(text, limit):
                    await self.error("frame_too_large", f"frames are limited to {limit} bytes")  # not read
                    continue
                await self.handle(text, allowed)
        except WebSocketDisconnect:
            pass
        finally:
            self.closed = True
            watcher.cancel()
            # Forwarders created just now take their subscription first, so cancelling them releases it.
            await asyncio.sleep(0)
            for _session, task in list(self.forwarders.values()):
                task.cancel()
            for _session, task in list(self.forwarders.values()):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def handle(self, text: str, allowed: bool = True) -> None:
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
        name = kind if isinstance(kind, str) else None
        if not allowed:
            err = fail("rate_limited", "too many frames; slow down", retry_after_s=self.bucket.wait_s())
            await self.refuse(err, client_id, name)
        elif kind == "chat.start":
            await self.start(frame, client_id)
        elif kind == "chat.cancel":
            await self.cancel(client_id)
        elif kind == "chat.resume":
            await self.resume(frame, client_id)
        elif kind == "ping":
            await self.send_json({"type": "pong", "id": client_id})
        elif kind == "auth":
            await self.reauth(frame, client_id)
        elif kind is None:
            await self.error("invalid_frame", "the frame has no 'type'", client_id)
        else:
            await self.error("unknown_type", f"unknown frame type {str(kind)[:40]!r}", client_id, name)

    async def start(self, frame: dict[str, Any], client_id: str | None) -> None:
        s = self.services.settings
        try:
            parsed = ChatStartFrame.model_validate(frame)
        except ValidationError as exc:
            await self.error("invalid_frame", describe(exc), client_id, "chat.start")
            return
        if parsed.id in self.forwarders:
            await self.error(
                "duplicate_id", f"a stream with id {parsed.id!r} is already running", parsed.id, "chat.start"
            )
            return
        try:
            params = to_start_params(
                parsed, parsed.id, max_messages=s.gateway_max_messages, max_prompt_chars=s.gateway_max_prompt_chars
            )
            session = await self.services.sessions.start(self.user.user_id, params)
        except GatewayError as exc:
            await self.refuse(exc, parsed.id, "chat.start")
            return
        self.follow(parsed.id, self.services.sessions.following(session), 0)

    async def reauth(self, frame: dict[str, Any], client_id: str | None) -> None:
        """A fresh token for this socket (before the current one expires). Same user only."""
        token = frame.get("token")
        if not isinstance(token, str) or not token:
            await self.error("invalid_frame", "auth needs 'token' (string)", client_id, "auth")
            return
        try:
            user = await self.services.auth.verify(token)
        except GatewayError as exc:
            await self.refuse(exc, client_id, "auth")
            return
        if user.user_id != self.user.user_id:
            await self.error("user_mismatch", "the new token is for another user; open a new socket", client_id, "auth")
            return
        self.user = user
        await self.send_json({**auth_ok(user), "id": client_id})

    def follow(self, client_id: str, stream: FollowedStream, after_seq: int) -> None:
        task = asyncio.create_task(self.forward(client_id, stream, after_seq))
        self.forwarders[client_id] = (stream, task)

    async def forward(self, client_id: str, stream: FollowedStream, after_seq: int) -> None:
        send = self.send_bytes_as_text
        try:
            async with stream.following():
                try:
                    async for batch in stream.log.follow(after_seq):
                        if self.batch and len(batch) > 1:
                            await send(b"[" + b",".join([e.data for e in batch]) + b"]")
                            continue
                        for entry in batch:
                            await send(entry.data)
                except GatewayError as exc:
                    # The cursor fell off the bounded log (or the shared copy was lost) while following.
                    with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
                        await self.send_json(
                            {
                                "type": "error",
                                "stream_id": None,
                                "id": client_id,
                                "code": exc.code,
                                "message": exc.message,
                                "retryable": exc.retryable,
                            }
                        )
                except (WebSocketDisconnect, OSError, RuntimeError):
                    pass  # the socket went away; the stream keeps generating for the resume window
        finally:
            current = self.forwarders.get(client_id)
            if current is not None and current[0] is stream:
                del self.forwarders[client_id]

    async def cancel(self, client_id: str | None) -> None:
        entry = self.forwarders.get(client_id or "")
        if entry is None:
            await self.error("stream_not_found", "no running stream with that id", client_id, "chat.cancel")
            return
        try:
            await entry[0].stop()
        except GatewayError as exc:
            await self.refuse(exc, client_id, "chat.cancel")

    async def resume(self, frame: dict[str, Any], client_id: str | None) -> None:
        stream_id, last_seq = frame.get("stream_id"), frame.get("last_seq", 0)
        if not isinstance(stream_id, str) or not isinstance(last_seq, int) or last_seq < 0:
            msg = "chat.resume needs 'stream_id' (string) and 'last_seq' (integer >= 0)"
            await self.error("invalid_frame", msg, client_id, "chat.resume")
            return
        try:
            stream = await self.services.sessions.find(stream_id, self.user.user_id)
            await stream.log.check_cursor(last_seq)
        except GatewayError as exc:
            await self.refuse(exc, client_id, "chat.resume")
            return
        key = stream.client_id or stream_id
        if key in self.forwarders:
            await self.error("duplicate_id", "that stream is already followed on this socket", client_id, "chat.resume")
            return
        self.follow(key, stream, last_seq)


async def authenticate(ws: WebSocket, services: Services) -> tuple[Principal | None, str | None]:
    """Who is connecting, from the handshake: `?ticket=`, the Authorization header, or the `bearer` subprotocol.

    Returns (None, subprotocol) when the handshake carries no credential: the first frame must then be `auth`.
    Whenever the client offered `bearer`, we answer with it, or browsers fail the handshake.
    """
    offered = _subprotocol_token(ws)
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


async def first_frame_auth(ws: WebSocket, services: Services) -> Principal | None:
    """Wait a few seconds for `{"type":"auth","token":...}`; close 4408 if none comes, 4401 if it is refused."""
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
    await ws.send_text(orjson.dumps({**auth_ok(user), "id": frame.get("id")}).decode())
    return user


async def close_refused(ws: WebSocket, err: GatewayError) -> None:
    """Close with the table's code for the error's kind, the code as the reason. Accepted first if need be:
    a close before the handshake completes would reach the client as a bare HTTP 403."""
    if ws.application_state == WebSocketState.CONNECTING:
        await ws.accept(subprotocol="bearer" if _subprotocol_token(ws) else None)
    await ws.close(TABLE[err.kind].close or 1008, err.code)


async def handshake(ws: WebSocket, services: Services) -> tuple[Principal | None, str | None]:
    if not origin_allowed(ws.headers.get("origin"), services.settings.cors_origins, ws.headers.get("host")):
        raise fail("origin_forbidden", "this page's origin may not open sockets here")
    if services.sessions.draining:
        raise fail("draining", "the server is restarting; reconnect shortly")  # the client sees 1012
    user, subprotocol = await authenticate(ws, services)
    return (require_user(user) if user is not None else None), subprotocol


@router.websocket("/v1/ws")
async def websocket_endpoint(ws: WebSocket) -> None:
    services = services_of(ws)
    try:
        user, subprotocol = await handshake(ws, services)
    except GatewayError as exc:
        await close_refused(ws, exc)
        return
    await ws.accept(subprotocol=subprotocol)
    if user is None:
        user = await first_frame_auth(ws, services)
        if user is None:
            return
    conn = Connection(ws, services, user, batch=ws.query_params.get("batch") in ("1", "true"))
    await conn.run()
    if ws.application_state == WebSocketState.CONNECTED and ws.client_state == WebSocketState.CONNECTED:
        with contextlib.suppress(RuntimeError, OSError):
            await ws.close()
