"""Anthropic Messages API: `POST /v1/messages` and `POST /v1/messages/count_tokens`, so the Anthropic SDKs (and
agents built on them) can use the gateway as their base URL, with any catalog model answering.

The API key is the gateway's own token, in `x-api-key` or `Authorization: Bearer`. `anthropic-version` is accepted
whatever it says (there is one version); `anthropic-beta` features the gateway does not provide itself are passed to
Claude, which alone serves such a request. A field the first model cannot honour is refused (400
`invalid_request_error` naming it), and a fallback model that would answer in another shape is skipped. Errors
come in Anthropic's body with its types; closing the connection stops the stream (the partial output is billed).
docs/api-messages.md has the details.
"""

from __future__ import annotations

import re
from dataclasses import replace

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Send

from gateway.deps import STREAM_START, FallbacksHeader, JsonBody, KeyOrBearerUser, ServicesDep, with_header_fallbacks
from gateway.errors import error_response, speaking
from gateway.faces.chat_completions_doc import COMPLETION_FAILURES
from gateway.faces.failure import error_of
from gateway.faces.http import BodyChannel, FollowResponse, GatheredReply, failed_before_output
from gateway.faces.messages import MessageAnswer, MessageEvents
from gateway.faces.sse import SSEChannel
from gateway.messages_body import CountTokensBody, MessagesBody, to_chat_request, to_messages
from gateway.openapi import declares
from providers.base import ChatRequest, ImagePart
from providers.capabilities import MESSAGES_FIELDS, unsupported
from providers.catalog import ModelSpec
from providers.pricing import estimate_tokens
from sessions.errors import fail
from sessions.manager import StartParams
from sessions.pump import Channel, StreamSource

router = APIRouter(tags=["anthropic"], route_class=speaking("anthropic"))

# Betas whose effect the gateway already has: prompt caching is passed through, tool input streams as it comes,
# strict tools and `output_config.format` are mapped to each model (or refused by name where it has neither).
ACCEPTED_BETAS = frozenset(
    {"prompt-caching-2024-07-31", "fine-grained-tool-streaming-2025-05-14", "structured-outputs-2025-11-13"}
)
BETA_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,79}")
MAX_BETAS = 16
# What one image costs at most at its default size, for the token estimate.
IMAGE_TOKENS = 1600


def passed_betas(request: Request) -> tuple[str, ...]:
    """The `anthropic-beta` features to pass to Claude: all but those the gateway provides itself. A model of
    another provider cannot take them, so it does not serve such a request (refused first, skipped as a fallback)."""
    out: list[str] = []
    for beta in request.headers.get("anthropic-beta", "").split(","):
        beta = beta.strip()
        if not beta or beta in ACCEPTED_BETAS:
            continue
        if not BETA_NAME.fullmatch(beta) or len(out) == MAX_BETAS:
            raise fail("bad_request", f"anthropic-beta: {beta[:80]!r} is not a beta feature name (or one too many)")
        out.append(beta)
    return tuple(dict.fromkeys(out))


def check_fields(spec: ModelSpec, request: ChatRequest) -> None:
    """Refuse what the first model cannot honour, naming the field as the Messages API does."""
    refused = unsupported(spec, request)
    if refused:
        u = refused[0]
        raise fail("bad_request", f"{u.field_in(MESSAGES_FIELDS)}: {spec.id} {u.reason}")


@router.post("/v1/messages", response_model=None)
@declares(raises=(*STREAM_START, *COMPLETION_FAILURES))
async def messages(
    request: Request,
    user: KeyOrBearerUser,
    body: JsonBody[MessagesBody],
    services: ServicesDep,
    fallbacks: FallbacksHeader = None,
) -> Response:
    body = with_header_fallbacks(body, fallbacks)
    betas = passed_betas(request)
    s = services.settings
    chat = to_chat_request(body, max_messages=s.gateway_max_messages, max_prompt_chars=s.gateway_max_prompt_chars)
    if betas:
        chat = replace(chat, betas=betas)
    chain = services.sessions.resolve_chain(body.model, body.fallbacks)
    check_fields(chain[0], chat)
    params = StartParams(
        request.headers.get("x-client-id"),
        body.model,
        tuple(body.fallbacks) if body.fallbacks is not None else None,
        chat,
        body.on_midstream_failure,
        body.on_refusal,
    )
    session = await services.sessions.start(user.user_id, params)
    answer = MessageAnswer(session.id, body.model)
    stream = services.sessions.following(session)
    source = StreamSource(stream)
    if not body.stream:
        return FollowResponse(
            source,
            GatheredReply(answer),
            lambda send, rcv: BodyChannel(send, rcv, face="anthropic"),
            on_disconnect="cancel",
        )
    early = await failed_before_output(stream, s.gateway_sse_ping_s)
    if early is not None:
        return error_response(error_of(early), "anthropic")
    headers = [(b"x-stream-id", session.id.encode()), (b"request-id", answer.id.encode())]

    def channel(send: Send, receive: Receive) -> Channel[bytes]:
        return SSEChannel(send, receive, ping_s=s.gateway_sse_ping_s, headers=headers, face="anthropic")

    return FollowResponse(source, MessageEvents(answer), channel, on_disconnect="cancel")


@router.post("/v1/messages/count_tokens", response_model=None)
@declares(raises=("unknown_model", "bad_request"))
async def count_tokens(
    request: Request, user: KeyOrBearerUser, body: JsonBody[CountTokensBody], services: ServicesDep
) -> JSONResponse:
    """An estimate, whatever model is named: about four characters a token of text, tool definitions counted as
    their JSON, and each image as much as an image costs at most (no provider is asked)."""
    passed_betas(request)
    services.sessions.resolve_chain(body.model, ())  # an unknown model is refused as on /v1/messages
    total = 0
    for m in to_messages(body):
        total += estimate_tokens(m.text())
        if not isinstance(m.content, str):
            total += IMAGE_TOKENS * sum(1 for p in m.content if isinstance(p, ImagePart))
        total += sum(estimate_tokens(c.name + c.arguments) for c in m.tool_calls)
    for t in body.tools or ():
        total += estimate_tokens(t.model_dump_json(exclude_none=True))
    return JSONResponse({"input_tokens": total, "gateway": {"estimated": True}})
