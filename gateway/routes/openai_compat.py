"""OpenAI-compatible `POST /v1/chat/completions`, so any OpenAI SDK or tool can use the gateway as its base URL.

The API key is the gateway's own bearer token. Every field of the API is mapped or refused by name
(`gateway.completions_request`); what the model cannot take is refused or dropped and reported, as the request's
`strict_params` (default `GATEWAY_STRICT_PARAMS`) says (`sessions.fit`). `fallbacks`, `on_midstream_failure`,
`on_refusal`, `strict_params` and `top_k` are extra body fields (`extra_body` in the SDKs); errors come in
OpenAI's own body, so the SDKs raise their own exceptions. Closing the connection stops the stream at once (the
partial output is billed): OpenAI clients never resume. docs/api-chat-completions.md is the reference.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.types import Receive, Send

from gateway.completions_body import CompletionBody
from gateway.completions_request import dropped_for, start_params
from gateway.deps import (
    STREAM_START,
    ClientId,
    CurrentUser,
    FallbacksHeader,
    JsonBody,
    ServicesDep,
    with_header_fallbacks,
)
from gateway.errors import speaking
from gateway.faces.chat_completions import Answer, CompletionChunks, HeldSSEChannel, Out
from gateway.faces.chat_completions_doc import COMPLETION_CHUNKS, COMPLETION_FAILURES, ChatCompletion
from gateway.faces.events import STREAM_ID_HEADER
from gateway.faces.http import BodyChannel, FollowResponse, GatheredReply
from gateway.openapi import declares
from sessions.pump import Channel, StreamSource

router = APIRouter(tags=["openai"], route_class=speaking("openai"))


@router.post("/v1/chat/completions", response_model=None)
@declares(
    raises=(*STREAM_START, *COMPLETION_FAILURES),
    json=ChatCompletion,
    events=COMPLETION_CHUNKS,
    headers=STREAM_ID_HEADER,
)
async def chat_completions(
    user: CurrentUser,
    body: JsonBody[CompletionBody],
    services: ServicesDep,
    client_id: ClientId = None,
    fallbacks: FallbacksHeader = None,
) -> FollowResponse:
    s = services.settings
    body = with_header_fallbacks(body, fallbacks)
    strict = s.gateway_strict_params if body.strict_params is None else body.strict_params
    params, unhonoured = start_params(
        body,
        client_id,
        strict=strict,
        max_messages=s.gateway_max_messages,
        max_prompt_chars=s.gateway_max_prompt_chars,
    )
    session = await services.sessions.start(user.user_id, params)
    fitted = session.fitted
    model = services.catalog.resolve(body.model).id  # the model asked for, named by every chunk
    answer = Answer(
        session.id,
        model,
        dropped=dropped_for(model, unhonoured) + (fitted.dropped if fitted is not None else ()),
        left_out=fitted.left_out if fitted is not None else (),
    )
    source = StreamSource(services.sessions.following(session))
    if not body.stream:
        reply = GatheredReply(answer)
        return FollowResponse(
            source, reply, lambda send, rcv: BodyChannel(send, rcv, face="openai"), on_disconnect="cancel"
        )
    include_usage = bool(body.stream_options is not None and body.stream_options.include_usage)
    headers = [(k.encode(), v.encode()) for k, v in answer.headers().items()]

    def channel(send: Send, receive: Receive) -> Channel[Out]:
        return HeldSSEChannel(send, receive, ping_s=s.gateway_sse_ping_s, headers=headers)

    encoder = CompletionChunks(answer, include_usage=include_usage)
    return FollowResponse(source, encoder, channel, on_disconnect="cancel")
