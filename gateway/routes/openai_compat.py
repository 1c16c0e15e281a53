"""OpenAI-compatible `POST /v1/chat/completions`, so any OpenAI SDK or tool can use the gateway as its base URL.

The API key is the gateway's own bearer token. `fallbacks` and `on_midstream_failure` are accepted as extra body
fields (`extra_body` in the SDKs); errors come in OpenAI's own body, so the SDKs raise their own exceptions.
Closing the connection stops the stream at once (the partial output is billed): OpenAI clients never resume.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import Receive, Send

from gateway.deps import STREAM_START, ClientId, CurrentUser, JsonBody, ServicesDep
from gateway.errors import speaking
from gateway.faces.chat_completions import Answer, CompletionChunks, CompletionReply
from gateway.faces.chat_completions_doc import COMPLETION_CHUNKS, COMPLETION_FAILURES, ChatCompletion
from gateway.faces.events import STREAM_ID_HEADER
from gateway.faces.http import BodyChannel, FollowResponse
from gateway.faces.sse import SSEChannel
from gateway.openapi import declares
from gateway.schemas import ChatBody, to_start_params
from sessions.pump import Channel, StreamSource

router = APIRouter(tags=["openai"], route_class=speaking("openai"))


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    include_usage: bool = False


class CompletionBody(ChatBody):
    """The Chat Completions request; fields we do not implement (top_p, seed, user, …) are ignored."""

    stream: bool = False
    stream_options: StreamOptions | None = None
    max_completion_tokens: int | None = Field(None, ge=1, le=1_000_000)
    n: int = Field(1, ge=1, le=1)


@router.post("/v1/chat/completions", response_model=None)
@declares(
    raises=(*STREAM_START, *COMPLETION_FAILURES),
    json=ChatCompletion,
    events=COMPLETION_CHUNKS,
    headers=STREAM_ID_HEADER,
)
async def chat_completions(
    user: CurrentUser, body: JsonBody[CompletionBody], services: ServicesDep, client_id: ClientId = None
) -> FollowResponse:
    s = services.settings
    if body.max_completion_tokens is not None:
        body = body.model_copy(update={"max_tokens": body.max_completion_tokens})
    params = to_start_params(
        body,
        client_id,
        max_messages=s.gateway_max_messages,
        max_prompt_chars=s.gateway_max_prompt_chars,
    )
    session = await services.sessions.start(user.user_id, params)
    answer = Answer(session.id, session.chain[0].id)
    source = StreamSource(services.sessions.following(session))
    if not body.stream:
        reply = CompletionReply(answer)
        return FollowResponse(
            source, reply, lambda send, rcv: BodyChannel(send, rcv, face="openai"), on_disconnect="cancel"
        )
    include_usage = body.stream_options is not None and body.stream_options.include_usage
    headers = [(b"x-stream-id", session.id.encode())]

    def channel(send: Send, receive: Receive) -> Channel[bytes]:
        return SSEChannel(send, receive, ping_s=s.gateway_sse_ping_s, headers=headers, face="openai")

    encoder = CompletionChunks(answer, include_usage=include_usage)
    return FollowResponse(source, encoder, channel, on_disconnect="cancel")
