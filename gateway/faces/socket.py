"""The gateway's own protocol over the WebSocket: each event its own text message, or (`?batch=1`) the events
that were ready together as one JSON array. A socket carries several streams; each is one follow."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from starlette.websockets import WebSocketDisconnect

from sessions.errors import GatewayError
from sessions.events import Error, encode_outside
from sessions.log import LogEntry
from sessions.pump import ChannelClosed, Watcher


class SocketFrames:
    """A batch of events to the messages that carry it."""

    def __init__(self, client_id: str | None, *, batch: bool) -> None:
        self._client_id = client_id
        self._batch = batch

    def events(self, batch: Sequence[LogEntry]) -> list[bytes] | None:
        if self._batch and len(batch) > 1:
            return [b"[" + b",".join([e.data for e in batch]) + b"]"]
        return [e.data for e in batch]

    def failed(self, error: GatewayError) -> list[bytes] | None:
        # `stream_id: null` and no `frame`: the follow of this `id` ended; the stream may still be running.
        return [encode_outside(Error(error.code, error.message, error.retryable), self._client_id)]

    def end(self) -> list[bytes] | None:
        return None


class SocketChannel:
    """One stream's messages on a shared socket. The socket's read loop notices the client leaving and cancels
    the follow, so nothing watches here."""

    def __init__(
        self, send_text: Callable[[bytes], Awaitable[None]], refuse: Callable[[GatewayError], Awaitable[None]]
    ) -> None:
        self._send_text = send_text
        self._refuse = refuse

    async def refuse(self, error: GatewayError) -> None:
        await self._refuse(error)

    async def begin(self) -> None:
        return None

    async def send(self, out: list[bytes]) -> None:
        try:
            for message in out:
                await self._send_text(message)
        except (WebSocketDisconnect, OSError, RuntimeError) as exc:
            raise ChannelClosed from exc

    def watchers(self) -> Sequence[Watcher]:
        return ()

    async def finish(self, completed: bool) -> None:
        return None
