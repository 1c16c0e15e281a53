"""The OpenAI Responses API: `POST /v1/responses` (streaming and not), and `GET`/`DELETE /v1/responses/{id}` for
the responses the gateway keeps. docs/api-responses.md says what is mapped and what is refused.

The API key is the gateway's bearer token. `fallbacks`, `on_midstream_failure` and `on_refusal` are extra body
fields, as on Chat Completions. Errors come in OpenAI's body (a body that does not match the schema is a 400 with
`param`), so the SDKs raise their own exceptions. Closing the connection stops the stream (billed).
"""

from __future__ import annotations

import logging
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response
from starlette.types import Receive, Send

from gateway.capability_check import refuse_unsupported
from gateway.deps import STREAM_START, CurrentUser, FallbacksHeader, ServicesDep, json_body, with_header_fallbacks
from gateway.errors import speaking
from gateway.faces.http import BodyChannel, FollowResponse
from gateway.faces.responses import Output, ResponseEvents, ResponseHead, ResponseReply, response_of_item
from gateway.faces.sse import SSEChannel
from gateway.openapi import declares
from gateway.response_store import Kept, ResponseStore
from gateway.responses_body import ResponsesBody, refuse_extras, to_chat_request, unsupported
from gateway.responses_input import Item, as_items, references, resolve, to_messages
from gateway.schemas import check_size
from gateway.services import Services
from providers.capabilities import RESPONSES_FIELDS, for_model
from providers.catalog import UnknownModel
from sessions.errors import GatewayError, fail
from sessions.manager import StartParams
from sessions.pump import Channel, StreamSource

log = logging.getLogger("gateway.responses")

JSON = "application/json"

router = APIRouter(tags=["responses"], route_class=speaking("openai"))

_read = json_body(ResponsesBody)


async def read_body(request: Request, services: ServicesDep) -> ResponsesBody:
    """The body, with a mismatch against the schema answered 400 as OpenAI does (with the field as `param`)."""
    try:
        return await _read(request, services)
    except GatewayError as err:
        if err.kind != "invalid":
            raise
        raise fail("invalid_parameter", err.message, details=err.details) from None


read_body.body_model = ResponsesBody  # type: ignore[attr-defined]  # documented in the OpenAPI document
Body = Annotated[ResponsesBody, Depends(read_body)]


def not_found(response_id: str, param: str | None = None) -> GatewayError:
    return fail(
        "response_not_found",
        f"no response {response_id!r} is kept for you",
        details={"param": param} if param else None,
    )


async def conversation(body: ResponsesBody, user_id: str, store: ResponseStore) -> list[Item]:
    """The input items this request stands for: those of `previous_response_id` first, references resolved."""
    items = as_items(body.input)
    if body.previous_response_id:
        prev = await store.get(body.previous_response_id, user_id)
        if prev is None:
            raise not_found(body.previous_response_id, "previous_response_id")
        items = [*prev.input_items, *(dict(i) for i in prev.response.get("output", ())), *items]
    found: dict[str, Item] = {}
    for ref in references(items):
        owner = response_of_item(ref)
        kept = await store.get(owner, user_id) if owner is not None else None
        item = kept.item(ref) if kept is not None else None
        if item is not None:
            found[ref] = item
    return resolve(items, found)


def stores(body: ResponsesBody, services: Services) -> bool:
    """Whether this response is kept: OpenAI's default (`store` unless false), if the gateway keeps any."""
    if services.settings.gateway_responses_ttl_s <= 0:
        if body.store:
            raise unsupported("store", "this gateway keeps no responses (GATEWAY_RESPONSES_TTL_S is 0)")
        return False
    return body.wants_store


@router.post("/v1/responses", response_model=None)
@declares(raises=(*STREAM_START, "unsupported_parameter", "invalid_parameter", "response_not_found"))
async def create_response(
    request: Request, user: CurrentUser, body: Body, services: ServicesDep, fallbacks: FallbacksHeader = None
) -> FollowResponse:
    s = services.settings
    body = with_header_fallbacks(body, fallbacks)
    refuse_extras(body)
    keep = stores(body, services)
    items = await conversation(body, user.user_id, services.responses)
    if not items:
        raise fail("invalid_parameter", "input: give at least one item (or a string)", details={"param": "input"})
    messages = check_size(
        to_messages(items, body.instructions),
        max_messages=s.gateway_max_messages,
        max_prompt_chars=s.gateway_max_prompt_chars,
    )
    asked = to_chat_request(body, messages)
    try:
        first = services.catalog.resolve(body.model)
    except UnknownModel:
        raise fail("unknown_model", f"unknown model {body.model!r}", details={"param": "model"}) from None
    refuse_unsupported(first, for_model(first, asked), RESPONSES_FIELDS)
    chain = tuple(body.fallbacks) if body.fallbacks is not None else None
    params = StartParams(
        request.headers.get("x-client-id"), body.model, chain, asked, body.on_midstream_failure, body.on_refusal
    )
    session = await services.sessions.start(user.user_id, params)
    head = ResponseHead(body, session.id, stored=keep)
    output = Output(
        head,
        session.id,
        session.chain[0].id,
        show_reasoning=body.shows_reasoning,
        encrypted_reasoning=body.wants_encrypted_reasoning,
    )
    source = StreamSource(services.sessions.following(session))

    async def keep_it() -> None:
        if keep and output.final is not None:
            await services.responses.put(head.id, Kept(user.user_id, output.final, items))

    if not body.stream:
        return FollowResponse(
            source,
            ResponseReply(output),
            lambda send, rcv: BodyChannel(send, rcv, face="openai"),
            on_disconnect="cancel",
            then=keep_it,
        )
    headers = [(b"x-stream-id", session.id.encode())]

    def channel(send: Send, receive: Receive) -> Channel[bytes]:
        return SSEChannel(send, receive, ping_s=s.gateway_sse_ping_s, headers=headers, face="openai")

    return FollowResponse(source, ResponseEvents(output), channel, on_disconnect="cancel", then=keep_it)


@router.get("/v1/responses/{response_id}")
@declares(raises=("response_not_found",))
async def get_response(response_id: str, user: CurrentUser, services: ServicesDep) -> Response:
    kept = await services.responses.get(response_id, user.user_id)
    if kept is None:
        raise not_found(response_id)
    return Response(orjson.dumps(kept.response), media_type=JSON)


@router.delete("/v1/responses/{response_id}")
@declares(raises=("response_not_found",))
async def delete_response(response_id: str, user: CurrentUser, services: ServicesDep) -> Response:
    if not await services.responses.delete(response_id, user.user_id):
        raise not_found(response_id)
    return Response(orjson.dumps({"id": response_id, "object": "response", "deleted": True}), media_type=JSON)
