"""Streams over SSE: start, resume from a cursor, cancel (on this instance or, with Redis, on another one)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Header
from pydantic import BaseModel
from starlette.types import Receive, Send

from gateway.deps import STREAM_START, ClientId, CurrentUser, HeaderOrTicketUser, JsonBody, ServicesDep
from gateway.faces.events import EVENTS, STREAM_ID_HEADER, EventFrames
from gateway.faces.http import FollowResponse
from gateway.faces.sse import SSEChannel
from gateway.openapi import declares
from gateway.schemas import ChatBody, to_start_params
from sessions.errors import fail
from sessions.follow import FollowedStream
from sessions.pump import StreamSource

router = APIRouter(tags=["streams"])

# A follow that cannot begin at its cursor, or whose stream's instance went away, is refused before the events.
FOLLOW = ("resume_too_old", "stream_owner_lost")


class Cancelled(BaseModel):
    stream_id: str
    cancelled: bool
    status: Literal["cancelling", "finished"]


def event_stream(
    stream: FollowedStream, *, after_seq: int = 0, ping_s: float, headers: list[tuple[bytes, bytes]] | None = None
) -> FollowResponse:
    """The stream's events over SSE from `after_seq`; a client that goes away leaves it running (resume)."""

    def channel(send: Send, receive: Receive) -> SSEChannel:
        return SSEChannel(send, receive, ping_s=ping_s, headers=headers or ())

    return FollowResponse(StreamSource(stream, after_seq), EventFrames(stream.id, stream.client_id), channel)


@router.post("/v1/chat/stream", response_model=None)
@declares(raises=STREAM_START, events=EVENTS, headers=STREAM_ID_HEADER)
async def chat_stream(
    user: CurrentUser, body: JsonBody[ChatBody], services: ServicesDep, client_id: ClientId = None
) -> FollowResponse:
    s = services.settings
    params = to_start_params(
        body,
        client_id,
        max_messages=s.gateway_max_messages,
        max_prompt_chars=s.gateway_max_prompt_chars,
    )
    session = await services.sessions.start(user.user_id, params)
    stream = services.sessions.following(session)
    return event_stream(stream, ping_s=s.gateway_sse_ping_s, headers=[(b"x-stream-id", session.id.encode())])


def _seq(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


def parse_cursor(stream_id: str, last_event_id: str | None, after: str | None) -> int:
    """Where to resume: `Last-Event-ID` (what EventSource sends on its own reconnects) wins over `?after=`,
    which a page uses when it opens a fresh EventSource (with a fresh ticket) after the browser gave up.
    A cursor that is not one of this stream's positions is refused, never read as "from the start"."""
    from_header = from_query = None
    if last_event_id is not None and last_event_id.strip():
        sid, _, seq = last_event_id.strip().rpartition(":")
        from_header = _seq(seq) if sid == stream_id else None
        if from_header is None:
            raise fail("invalid_cursor", f"Last-Event-ID must be {stream_id}:<seq>, a seq being a number >= 0")
    if after is not None:
        from_query = _seq(after.strip())
        if from_query is None:
            raise fail("invalid_cursor", "after must be a number >= 0 (the last seq received)")
    return from_header if from_header is not None else (from_query or 0)


@router.get("/v1/streams/{stream_id}/events", response_model=None)
@declares(raises=("stream_not_found", "invalid_cursor", *FOLLOW), events=EVENTS)
async def stream_events(
    stream_id: str,
    user: HeaderOrTicketUser,
    services: ServicesDep,
    after: str | None = None,
    last_event_id: str | None = Header(None),
) -> FollowResponse:
    stream = await services.sessions.find(stream_id, user.user_id)
    cursor = parse_cursor(stream_id, last_event_id, after)
    return event_stream(stream, after_seq=cursor, ping_s=services.settings.gateway_sse_ping_s)


@router.post("/v1/streams/{stream_id}/cancel", response_model=Cancelled)
@declares(raises=("stream_not_found",))
async def cancel_stream(stream_id: str, user: CurrentUser, services: ServicesDep) -> dict[str, object]:
    stream = await services.sessions.find(stream_id, user.user_id)
    cancelled = await stream.stop()
    return {"stream_id": stream_id, "cancelled": cancelled, "status": "cancelling" if cancelled else "finished"}
