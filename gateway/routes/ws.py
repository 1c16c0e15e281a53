"""The WebSocket endpoint: several streams multiplexed on one socket, JSON text frames both ways.

Each stream the socket follows is one follow of the pump (`sessions.pump`), with the socket face's encoder and
channel (`gateway.faces.socket`). A refused frame is answered by an `error` carrying the frame's own `id` and
`type` (`frame`); nothing else changes.
"""

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
from gateway.deps import services_of
from gateway.faces.socket import SocketChannel, SocketFrames
from gateway.request_id import body_send
from gateway.schemas import ChatStartFrame, describe, to_start_params
from gateway.services import Services
from gateway.socket_auth import auth_ok, close_refused, first_frame_auth, frame_too_large, handshake
from sessions.errors import GatewayError, fail
from sessions.events import Error, Refused, encode_outside
from sessions.follow import FollowedStream
from sessions.pump import StreamSource, follow

log = logging.getLogger("gateway.ws")
router = APIRouter(tags=["websocket"])

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


class Connection:
    """One socket: reads frames, starts and cancels streams, follows their events."""

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
        # Messages go to the server's `send` beneath the middleware wrappers (`gateway.request_id.body_send`);
        # `send_text` keeps the state check and the disconnect mapping of Starlette's `WebSocket.send`.
        self._send = body_send(ws.scope, ws.send)
        self.closed = False
        self.close_code: int | None = None

    async def send_text(self, data: bytes) -> None:
        async with self.send_lock:
            ws = self.ws
            if ws.application_state is not WebSocketState.CONNECTED:
                raise RuntimeError("the socket is closed")
            try:
                await self._send({"type": "websocket.send", "text": data.decode()})
            except OSError:
                ws.application_state = WebSocketState.DISCONNECTED
                raise WebSocketDisconnect(code=1006) from None

    async def refuse(self, err: GatewayError, client_id: str | None, frame: str | None) -> None:
        """The `error` for one refused frame: its own `id`, its `type` as `frame`."""
        ev = Error(err.code, err.message, err.retryable, retry_after_s=err.retry_after_s, refused=Refused(frame))
        await self.send_text(encode_outside(ev, client_id))

    async def error(self, code: str, message: str, client_id: str | None, frame: str | None) -> None:
        await self.refuse(fail(code, message), client_id, frame)

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
                    await self.error("invalid_frame", "send JSON text frames, not binary", None, None)
                elif frame_too_large(text, limit):  # not read, so its id is not known
                    await self.error("frame_too_large", f"frames are limited to {limit} bytes", None, None)
                else:
                    await self.handle(text, allowed)
        except WebSocketDisconnect:
            pass
        finally:
            self.closed = True
            watcher.cancel()
            await self._stop_forwarders()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _stop_forwarders(self) -> None:
        # Forwarders created just now take their subscription first, so cancelling them releases it.
        await asyncio.sleep(0)
        for _stream, task in list(self.forwarders.values()):
            task.cancel()
        for _stream, task in list(self.forwarders.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def handle(self, text: str, allowed: bool = True) -> None:
        try:
            frame = orjson.loads(text)
        except orjson.JSONDecodeError:
            await self.error("invalid_json", "the frame is not valid JSON", None, None)
            return
        if not isinstance(frame, dict):
            await self.error("invalid_frame", "a frame must be a JSON object", None, None)
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
            await self.send_text(orjson.dumps({"type": "pong", "id": client_id}))
        elif kind == "auth":
            await self.reauth(frame, client_id)
        elif kind is None:
            await self.error("invalid_frame", "the frame has no 'type'", client_id, None)
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
            msg = f"a stream with id {parsed.id!r} is already running on this socket (it carries on)"
            await self.error("duplicate_id", msg, parsed.id, "chat.start")
            return
        try:
            params = to_start_params(
                parsed, parsed.id, max_messages=s.gateway_max_messages, max_prompt_chars=s.gateway_max_prompt_chars
            )
            session = await self.services.sessions.start(self.user.user_id, params)
        except GatewayError as exc:
            await self.refuse(exc, parsed.id, "chat.start")
            return
        self.follow(parsed.id, self.services.sessions.following(session), 0, parsed.id, "chat.start")

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
            msg = "the new token is for another user; open a new socket"
            await self.error("user_mismatch", msg, client_id, "auth")
            return
        self.user = user
        await self.send_text(auth_ok(user, client_id))

    def follow(self, key: str, stream: FollowedStream, after_seq: int, frame_id: str | None, frame: str) -> None:
        """Follow `stream` on this socket under `key`; a refusal (the cursor) answers the frame that asked."""
        channel = SocketChannel(self.send_text, lambda err: self.refuse(err, frame_id, frame))
        task = asyncio.create_task(self._follow(key, stream, after_seq, channel))
        self.forwarders[key] = (stream, task)

    async def _follow(self, key: str, stream: FollowedStream, after_seq: int, channel: SocketChannel) -> None:
        try:
            # A socket that goes away leaves the stream running for the resume window.
            await follow(StreamSource(stream, after_seq), SocketFrames(key, batch=self.batch), channel)
        finally:
            current = self.forwarders.get(key)
            if current is not None and current[0] is stream:
                del self.forwarders[key]

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
        except GatewayError as exc:
            await self.refuse(exc, client_id, "chat.resume")
            return
        key = stream.client_id or stream_id
        if key in self.forwarders:
            msg = "that stream is already followed on this socket"
            await self.error("duplicate_id", msg, client_id, "chat.resume")
            return
        self.follow(key, stream, last_seq, client_id, "chat.resume")


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
