"""What an HTTP route returns once it has found or started what the client follows: a response that runs the
pump, and the channel for faces that answer with one body at the end."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from gateway.errors import Face, error_response
from gateway.faces.sse import wait_disconnect
from sessions.errors import GatewayError
from sessions.pump import Channel, FaceEncoder, OnDisconnect, Source, Watcher, follow


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
        await follow(self.source, self.encoder, channel, on_disconnect=self.on_disconnect, until=self.until)
        if self.then is not None:
            await self.then()


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
