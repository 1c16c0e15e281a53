"""What an HTTP route returns once it has found or started what the client follows: a response that runs the
pump, the channel for faces that answer with one body at the end, and the wait that lets a streaming face answer
a stream that fails before its first token with an HTTP error instead of an event."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from gateway.errors import Face, error_response
from gateway.faces.sse import SSEChannel, wait_disconnect
from gateway.request_id import body_send
from sessions.errors import GatewayError
from sessions.events import Delta, Done, Draining, Error, Event, Reasoning, ToolCallDelta
from sessions.follow import FollowedStream
from sessions.log import LogEntry
from sessions.pump import Channel, FaceEncoder, OnDisconnect, Source, Watcher, follow

_OUTPUT = (Delta, ToolCallDelta, Reasoning, Done)


class FollowResponse(Response):
    """Follows `source` through `encoder` to the channel that `channel(send, receive)` builds, when served; then
    awaits `then()` (what the route does once the answer is out, such as keeping it)."""

    def __init__(
        self,
        source: Source[Any],
        encoder: FaceEncoder[Any, Any],
        channel: Callable[[Send, Receive], Channel[Any]],
        *,
        on_disconnect: OnDisconnect = "detach",
        until: Sequence[Watcher] = (),
        then: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.source = source
        self.encoder = encoder
        self.channel = channel
        self.on_disconnect: OnDisconnect = on_disconnect
        self.until = until
        self.then = then
        self.status_code = 200
        self.background = None
        self.raw_headers = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        channel = self.channel(send, receive)
        if isinstance(channel, SSEChannel):  # the per-token writes skip the middleware wrappers
            channel.send_body_with(body_send(scope, send))
        await follow(self.source, self.encoder, channel, on_disconnect=self.on_disconnect, until=self.until)
        if self.then is not None:
            await self.then()


class Gathering(Protocol):
    """What a face's whole answer is made of: every event taken in turn, then one response."""

    def take(self, ev: Event) -> None: ...

    def fail(self, error: GatewayError) -> None:
        """The follow cannot go on: the answer is this error."""
        ...

    def reply(self) -> Response: ...


class GatheredReply:
    """The encoder of a face that answers once, at the end (on a `BodyChannel`)."""

    def __init__(self, answer: Gathering) -> None:
        self.answer = answer

    def events(self, batch: Sequence[LogEntry]) -> Response | None:
        take = self.answer.take
        for entry in batch:
            take(entry.event)
        return None

    def failed(self, error: GatewayError) -> Response | None:
        self.answer.fail(error)
        return None

    def end(self) -> Response:
        return self.answer.reply()


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


class BodyChannel:
    """A `Channel` whose one send is the whole answer (a Response), made once the follow has ended."""

    def __init__(self, send: Send, receive: Receive, *, face: Face = "gateway") -> None:
        self._send = send
        self._receive = receive
        self._face = face

    async def refuse(self, error: GatewayError) -> None:
        await error_response(error, self._face)({"type": "http"}, _no_receive, self._send)

    async def begin(self) -> None:
        return None

    async def send(self, out: Response) -> None:
        await out({"type": "http"}, _no_receive, self._send)

    def watchers(self) -> Sequence[Watcher]:
        return (lambda: wait_disconnect(self._receive),)

    async def finish(self, completed: bool) -> None:
        return None


async def failed_before_output(stream: FollowedStream, within_s: float) -> Error | Draining | None:
    """The `error` a stream ends with before any output, if it comes within `within_s`; None as soon as output
    (or the end) comes, or when the time is up. The client is sent nothing meanwhile: a wait this short costs no
    first token anything, and lets a face answer a stream every model refused as the API itself would (an HTTP
    429 or 529) rather than inside a 200."""
    with contextlib.suppress(TimeoutError):
        async with stream.following(), asyncio.timeout(within_s):
            batches = stream.log.follow(0)
            try:
                async for batch in batches:
                    for entry in batch:
                        ev = entry.event
                        if isinstance(ev, Error | Draining):
                            return ev
                        if isinstance(ev, _OUTPUT):
                            return None
            finally:
                close = getattr(batches, "aclose", None)  # a generator: end it here, not when collected
                if close is not None:
                    await close()
    return None
