"""Streams over SSE: start, resume from a cursor, cancel (on this instance or, with Redis, on another one)."""

from __future__ import annotations

from fastapi import APIRouter, Header, Request
from pydantic import ValidationError
from starlette.responses import JSONResponse, Response

from gateway.deps import CurrentUser, ServicesDep
from gateway.errors import error_response
from gateway.routes.tickets import HeaderOrTicketUser
from gateway.schemas import ChatBody, describe, to_start_params
from gateway.sse import EventStreamResponse

router = APIRouter(tags=["streams"])


async def read_json_body(request: Request, limit: int) -> bytes | JSONResponse:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return error_response(413, "request_too_large", f"the request body is over {limit} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return error_response(413, "request_too_large", f"the request body is over {limit} bytes")
    return body


@router.post("/v1/chat/stream", response_model=None)
async def chat_stream(request: Request, user: CurrentUser, services: ServicesDep) -> Response | EventStreamResponse:
    s = services.settings
    body = await read_json_body(request, s.gateway_max_frame_bytes)
    if isinstance(body, Response):
        return body
    try:
        parsed = ChatBody.model_validate_json(body)
    except ValidationError as exc:
        code = "invalid_json" if any(e["type"] == "json_invalid" for e in exc.errors()) else "invalid_request"
        return error_response(422, code, describe(exc))
    params = to_start_params(
        parsed,
        request.headers.get("x-client-id"),
        max_messages=s.gateway_max_messages,
        max_prompt_chars=s.gateway_max_prompt_chars,
    )
    session = await services.sessions.start(user.user_id, params)
    return EventStreamResponse(
        services.sessions.following(session),
        ping_s=s.gateway_sse_ping_s,
        extra_headers=[(b"x-stream-id", session.id.encode())],
    )


def parse_cursor(stream_id: str, last_event_id: str | None, after: int | None) -> int:
    """Where to resume: `Last-Event-ID` (what EventSource sends on its own reconnects) wins over `?after=`,
    which a page uses when it opens a fresh EventSource (with a fresh ticket) after the browser gave up."""
    if last_event_id:
        sid, _, seq = last_event_id.strip().rpartition(":")
        if sid == stream_id and seq.isdigit():
            return int(seq)
    if after is not None:
        return max(0, after)
    return 0


@router.get("/v1/streams/{stream_id}/events", response_model=None)
async def stream_events(
    stream_id: str,
    user: HeaderOrTicketUser,
    services: ServicesDep,
    after: int | None = None,
    last_event_id: str | None = Header(None),
) -> EventStreamResponse:
    stream = await services.sessions.find(stream_id, user.user_id)
    cursor = parse_cursor(stream_id, last_event_id, after)
    # Fail now (410) rather than mid-response if the cursor fell off the bounded log.
    await stream.log.check_cursor(cursor)
    return EventStreamResponse(stream, after_seq=cursor, ping_s=services.settings.gateway_sse_ping_s)


@router.post("/v1/streams/{stream_id}/cancel")
async def cancel_stream(stream_id: str, user: CurrentUser, services: ServicesDep) -> dict[str, object]:
    stream = await services.sessions.find(stream_id, user.user_id)
    cancelled = await stream.stop()
    return {"stream_id": stream_id, "cancelled": cancelled, "status": "cancelling" if cancelled else "finished"}
