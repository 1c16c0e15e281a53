"""Server-sent events on the wire, for every face that speaks them: the framing, and the channel (one ASGI
response body: writes, heartbeat comments while idle, the client's disconnect)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from starlette.types import Message, Receive, Send

from gateway.errors import Face, error_response
from sessions.errors import GatewayError
from sessions.log import LogEntry
from sessions.pump import ChannelClosed, Watcher

HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),  # keep proxies from buffering the stream
]
PING = b": ping\n\n"


def event(name: bytes, data: bytes) -> list[bytes]:
    """One event's frame without an `id:` (nothing to resume from), as parts to join."""
    return [b"event: ", name, b"\ndata: ", data, b"\n\n"]


def log_events(batch: Sequence[LogEntry], id_prefix: bytes) -> bytes:
    """Log entries as frames of their own `event:` name, `id: <id_prefix><seq>` and `data:`, in one chunk (tokens
    that arrived together are sent together). On the per-token path: one tuple per event, one join."""
    parts: list[bytes] = []
    for e in batch:
        parts += (b"event: ", e.name.encode(), b"\nid: ", id_prefix, str(e.seq).encode(), b"\ndata: ", e.data, b"\n\n")
    return b"".join(parts)


def data(payload: bytes) -> list[bytes]:
    """A frame with only a `data:` line (what the OpenAI SDKs read)."""
    return [b"data: ", payload, b"\n\n"]


async def wait_disconnect(receive: Receive) -> None:
    """Returns when the client goes away."""
    while True:
        msg: Message = await receive()
        if msg["type"] == "http.disconnect":
            return


class SSEChannel:
    """A `Channel` of bytes: each send is one body chunk. Refusals are the face's JSON error answer."""

    def __init__(
        self,
        send: Send,
        receive: Receive,
        *,
        ping_s: float,
        headers: Sequence[tuple[bytes, bytes]] = (),
        face: Face = "gateway",
        preamble: bytes = b"",
        hold: bool = False,
    ) -> None:
        self._send = send
        self._body_send = send  # see `send_body_with`
        self._receive = receive
        self._ping_s = ping_s
        self._headers = [*HEADERS, *headers]
        self._face = face
        self._preamble = preamble
        # `hold`: the response starts with the first bytes sent (a heartbeat's too), not at `begin`.
        self._hold = hold
        self.started = False
        self._loop = asyncio.get_running_loop()
        self._last_sent = self._loop.time()

    def send_body_with(self, body_send: Send) -> None:
        """Body chunks go to `body_send` (`gateway.request_id.body_send`: beneath the middleware wrappers, which
        act on the response's start only); the start still goes through `send`."""
        self._body_send = body_send

    async def refuse(self, error: GatewayError) -> None:
        await error_response(error, self._face)({"type": "http"}, self._receive, self._send)

    async def begin(self) -> None:
        if not self._hold:
            await self._start()

    async def _start(self) -> None:
        self.started = True
        await self._send({"type": "http.response.start", "status": 200, "headers": self._headers})
        if self._preamble:
            await self.send(self._preamble)

    async def send(self, out: bytes) -> None:
        try:
            if not self.started:
                await self._start()
            # No lock: the server writes each body message whole, so a heartbeat cannot split a chunk.
            await self._body_send({"type": "http.response.body", "body": out, "more_body": True})
        except OSError as exc:  # the server's own "client disconnected"
            raise ChannelClosed from exc
        self._last_sent = self._loop.time()

    def watchers(self) -> Sequence[Watcher]:
        return (self._heartbeat, lambda: wait_disconnect(self._receive))

    async def finish(self, completed: bool) -> None:
        # Also when the follow was cut short: a body ended cleanly (after a drain, say) lets the client reconnect.
        with contextlib.suppress(OSError):
            if not self.started:
                await self._start()
            await self._body_send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _heartbeat(self) -> None:
        loop = self._loop
        while True:
            await asyncio.sleep(max(0.05, self._ping_s - (loop.time() - self._last_sent)))
            if loop.time() - self._last_sent >= self._ping_s:
                await self.send(PING)
