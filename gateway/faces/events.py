"""The gateway's own protocol over SSE (`POST /v1/chat/stream`, `GET /v1/streams/{id}/events`): each event as
`event: <type>`, `id: <stream_id>:<seq>` (what `Last-Event-ID` resumes from), `data: <the event's JSON>`."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.faces import sse
from gateway.openapi import EventStream
from gateway.replies import EVENT_FRAMES
from sessions.errors import GatewayError
from sessions.events import EVENT_TYPES, Error, encode_outside
from sessions.log import LogEntry

EVENTS = EventStream(
    "Server-sent events, each `event: <type>`, `id: <stream_id>:<seq>`, `data: <the event as JSON>`; the types: "
    + ", ".join(f"`{t.TYPE}`" for t in EVENT_TYPES)
    + " (docs/protocol.md). A failed stream ends with `error`; a follow that cannot go on ends with an `error` "
    "without an `id:`.",
    EVENT_FRAMES,
)
STREAM_ID_HEADER = {
    "x-stream-id": "The stream's id: resume with `GET /v1/streams/{id}/events`, stop with `POST "
    "/v1/streams/{id}/cancel`."
}


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
