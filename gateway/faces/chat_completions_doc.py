"""The Chat Completions answers as the OpenAPI document shows them (`gateway.faces.chat_completions` writes them).

`tests/test_openapi.py` checks real answers against these models, so the two cannot drift apart unseen.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from gateway.openapi import SSE, EventStream, OpenAIErrorBody
from gateway.replies import EventSegmentJson, Money

# What a stream that started can still end with, answered instead of a `chat.completion` when not streaming.
COMPLETION_FAILURES = (
    "all_models_failed",
    "all_models_rate_limited",
    "midstream_failed",
    "bad_request",
    "context_length_exceeded",
    "content_filtered",
    "unsupported_parameter",
    "budget_exceeded",
    "draining",
)


class FunctionCall(BaseModel):
    name: str | None
    arguments: str


class ToolCall(BaseModel):
    id: str | None
    type: Literal["function"]
    function: FunctionCall


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str | None
    refusal: None
    tool_calls: list[ToolCall] | SkipJsonSchema[None] = Field(None, description="Only when the model called tools.")


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: None
    finish_reason: Literal["stop", "length", "tool_calls", "content_filter"]


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class FallbackTaken(BaseModel):
    from_model: str
    to_model: str
    reason: str
    chars_so_far: int
    mode: Literal["continue", "restart"]


class GatewayExtra(BaseModel):
    """What OpenAI has no field for: the stream, its cost, the fallbacks taken and each attempt."""

    stream_id: str
    cost_usd: Money | None
    estimated: bool
    fallbacks: list[FallbackTaken]
    segments: list[EventSegmentJson]


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    system_fingerprint: None
    choices: list[Choice]
    usage: CompletionUsage
    gateway: GatewayExtra


class DeltaToolCall(BaseModel):
    index: int
    id: str | SkipJsonSchema[None] = None
    type: Literal["function"] | SkipJsonSchema[None] = None
    function: dict[str, str]


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | SkipJsonSchema[None] = None
    content: str | SkipJsonSchema[None] = None
    tool_calls: list[DeltaToolCall] | SkipJsonSchema[None] = None


class ChunkChoice(BaseModel):
    index: int
    delta: ChunkDelta
    logprobs: None
    finish_reason: Literal["stop", "length", "tool_calls", "content_filter"] | None


class SeamTaken(BaseModel):
    keep_chars: int
    discard_chars: int
    reason: str


class ChunkNote(BaseModel):
    """On a chunk of its own: a fallback taken, or where the continuation joins the answer held so far."""

    fallback: FallbackTaken | SkipJsonSchema[None] = None
    seam: SeamTaken | SkipJsonSchema[None] = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    system_fingerprint: None
    choices: list[ChunkChoice] = Field(description="Empty on the last chunk when `include_usage` asked for usage.")
    usage: CompletionUsage | SkipJsonSchema[None] = None
    gateway: GatewayExtra | ChunkNote | SkipJsonSchema[None] = Field(
        None, description="The whole account on the chunk with `finish_reason`; a note on a fallback or seam chunk."
    )


COMPLETION_CHUNKS = EventStream(
    "With `stream: true`: `data: <chat.completion.chunk>` frames, then `data: [DONE]`. A stream that fails after "
    'it started sends `data: {"error": {message, type, param, code}}` before `[DONE]`; with '
    "`stream_options.include_usage`, a last chunk with empty `choices` carries `usage`.",
    (SSE("message", ChatCompletionChunk), SSE("message", OpenAIErrorBody), SSE("message", "[DONE]")),
)
