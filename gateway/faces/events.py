"""The gateway's own protocol over SSE (`POST /v1/chat/stream`, `GET /v1/streams/{id}/events`): each event as
`event: <type>`, `id: <stream_id>:<seq>` (what `Last-Event-ID` resumes from), `data: <the event's JSON>`."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.faces import sse
from sessions.errors import GatewayError
from sessions.events import Error, encode_outside
from sessions.log import LogEntry


class EventFrames:
    def __init__(self, stream_id: str, client_id: str | None) -> None:
        self._id_prefix = stream_id.encode() + b":"
        self._client_id = client_id

    def events(self, batch: Sequence[LogEntry]) -> bytes | None:
        return sse.log_events(batch, self._id_prefix)

    def failed(self, error: GatewayError) -> bytes | None:
        # Without an `id:`, so a reconnect from the last event received is refused rather than skipping events.
        ev = Error(error.code, error.message, error.retryable)
        return b"".join(sse.event(b"error", encode_outside(ev, self._client_id)))

    def end(self) -> bytes | None:
        return None
