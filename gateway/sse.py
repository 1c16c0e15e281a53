"""Server-sent events for one stream: replay from a cursor, follow live, ping, notice disconnects.

A raw ASGI response (rather than StreamingResponse) so that a disconnect detaches the subscriber, which
keeps the stream alive for the resume window, instead of cancelling the generation. The stream may run here
or on another instance (`FollowedStream`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

import orjson
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from sessions.errors import GatewayError
from sessions.follow import FollowedStream
from sessions.log import LogEntry

SSE_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),  # keep proxies from buffering the stream
]


def encode_batch(stream_id: bytes, batch: Sequence[LogEntry]) -> bytes:
    """All events of a batch in one body chunk: tokens that arrived together are sent together."""
    parts: list[bytes] = []
    for e in batch:
        parts += (
            b"event: ",
            e.name.encode(),
            b"\nid: ",
            stream_id,
            b":",
            str(e.seq).encode(),
            b"\ndata: ",
            e.data,
            b"\n\n",
        )
    return b"".join(parts)


def error_event(stream: FollowedStream, code: str, message: str) -> bytes:
    # As on the WebSocket: `stream_id: null` says the follow failed, not the stream (which may still be running).
    data = {
        "type": "error",
        "stream_id": None,
        "id": stream.client_id,
        "code": code,
        "message": message,
        "retryable": False,
    }
    return b"event: error\ndata: " + orjson.dumps(data) + b"\n\n"


class SSEChannel:
    """One event-stream response on the wire: body writes, heartbeat comments while idle, and the disconnect.

    `run(*work)` runs the given coroutines beside the heartbeat and the disconnect listener until the first of
    them ends, then stops the rest. It returns True when the first work item finished on its own.
    """

    def __init__(self, send: Send, receive: Receive, ping_s: float) -> None:
        self._send = send
        self._receive = receive
        self._ping_s = ping_s
        self._lock = asyncio.Lock()
        self._loop = asyncio.get_running_loop()
        self._last_sent = self._loop.time()

    async def start(self, headers: list[tuple[bytes, bytes]]) -> None:
        await self._send({"type": "http.response.start", "status": 200, "headers": headers})

    async def write(self, chunk: bytes) -> None:
        async with self._lock:
            await self._send({"type": "http.response.body", "body": chunk, "more_body": True})
        self._last_sent = self._loop.time()

    async def end(self) -> None:
        with contextlib.suppress(OSError):
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _heartbeat(self) -> None:
        loop = self._loop
        while True:
            await asyncio.sleep(max(0.05, self._ping_s - (loop.time() - self._last_sent)))
            if loop.time() - self._last_sent >= self._ping_s:
                await self.write(b": ping\n\n")

    async def run(self, *work: Callable[[], Awaitable[None]]) -> bool:
        return await run_until_first(*work, self._heartbeat, lambda: wait_disconnect(self._receive))


async def wait_disconnect(receive: Receive) -> None:
    """Returns when the client goes away."""
    while True:
        msg: Message = await receive()
        if msg["type"] == "http.disconnect":
            return


async def run_until_first(*work: Callable[[], Awaitable[None]]) -> bool:
    """Run the coroutines until the first ends, then stop the rest; True when the first one listed finished
    on its own (not cancelled, not failed)."""
    tasks = [asyncio.ensure_future(w()) for w in work]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        return tasks[0] in done and tasks[0].exception() is None
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await t


class EventStreamResponse(Response):
    def __init__(
        self,
        stream: FollowedStream,
        *,
        after_seq: int = 0,
        ping_s: float = 15.0,
        extra_headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        self.stream = stream
        self.after_seq = after_seq
        self.ping_s = ping_s
        self.raw_headers = [*SSE_HEADERS, *extra_headers]
        self.status_code = 200
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        channel = SSEChannel(send, receive, self.ping_s)
        await channel.start(self.raw_headers)
        sid = self.stream.id.encode()

        async def forward() -> None:
            try:
                async for batch in self.stream.log.follow(self.after_seq):
                    await channel.write(encode_batch(sid, batch))
            except GatewayError as exc:
                # The reader fell behind the bounded log (or lost the shared copy): say so, without an `id:`,
                # so a reconnect from the last event received is refused with 410 rather than skipping events.
                await channel.write(error_event(self.stream, exc.code, str(exc)))

        async with self.stream.following():
            completed = await channel.run(forward)
        if completed:
            await channel.end()
