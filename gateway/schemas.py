"""Inbound request shapes (validated once per request, never per token) and their conversion."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from providers.base import (
    CacheControl,
    ChatRequest,
    ContentPart,
    ImagePart,
    Message,
    TextPart,
    ToolCall,
    ToolSpec,
)
from sessions.errors import fail
from sessions.manager import StartParams


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class InCacheControl(_In):
    """An Anthropic prompt-caching breakpoint, in Anthropic's own shape. On the Chat Completions face it is an
    extension field of a content part, a message (its last block) or a tool; it reaches Anthropic unchanged."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None

    def mark(self) -> CacheControl:
        return CacheControl(self.type, self.ttl)


def cache_mark(c: InCacheControl | None) -> CacheControl | None:
    return None if c is None else c.mark()


class InTextPart(_In):
    type: Literal["text"]
    text: str
    cache_control: InCacheControl | None = None


class InImageUrl(_In):
    url: str = Field(max_length=20_000_000)


class InImagePart(_In):
    type: Literal["image_url"]
    image_url: InImageUrl
    cache_control: InCacheControl | None = None


class InFunction(_In):
    name: str = Field(min_length=1, max_length=128)
    arguments: str = ""


class InToolCall(_In):
    id: str = Field(min_length=1, max_length=256)
    type: Literal["function"] = "function"
    function: InFunction


class InMessage(_In):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[Annotated[InTextPart | InImagePart, Field(discriminator="type")]] | None = None
    tool_calls: list[InToolCall] | None = None
    tool_call_id: str | None = None
    cache_control: InCacheControl | None = None


class InFunctionDef(_In):
    name: str = Field(min_length=1, max_length=128)
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class InTool(_In):
    type: Literal["function"] = "function"
    function: InFunctionDef
    cache_control: InCacheControl | None = None


class ChatBody(_In):
    model: str = Field(min_length=1, max_length=200)
    fallbacks: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(None, max_length=8)
    messages: list[InMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    temperature: float | None = Field(None, ge=0, le=2)
    stop: str | list[str] | None = None
    tools: list[InTool] | None = None
    on_midstream_failure: Literal["continue", "restart", "error"] = "continue"
    # A content-filter refusal before any output: reported as `content_filtered`, or tried on the next model.
    on_refusal: Literal["error", "fallback"] = "error"


class ChatStartFrame(ChatBody):
    type: Literal["chat.start"]
    id: str = Field(min_length=1, max_length=128)


def _content(m: InMessage) -> str | tuple[ContentPart, ...]:
    if m.content is None or isinstance(m.content, str):
        return m.content or ""
    return tuple(
        TextPart(p.text, cache_mark(p.cache_control))
        if isinstance(p, InTextPart)
        else ImagePart(p.image_url.url, cache_mark(p.cache_control))
        for p in m.content
    )


def to_chat_request(body: ChatBody, *, max_messages: int, max_prompt_chars: int) -> ChatRequest:
    if len(body.messages) > max_messages:
        raise fail("too_many_messages", f"at most {max_messages} messages")
    msgs = check_size(
        tuple(
            Message(
                "system" if m.role == "developer" else m.role,
                _content(m),
                tuple(ToolCall(tc.id, tc.function.name, tc.function.arguments) for tc in m.tool_calls or ()),
                m.tool_call_id,
                cache_mark(m.cache_control),
            )
            for m in body.messages
        ),
        max_messages=max_messages,
        max_prompt_chars=max_prompt_chars,
    )
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    tools = tuple(
        ToolSpec(
            t.function.name, t.function.description, t.function.parameters, cache_control=cache_mark(t.cache_control)
        )
        for t in body.tools or ()
    )
    return ChatRequest(msgs, body.max_tokens, body.temperature, stop, tools)


def check_size(msgs: tuple[Message, ...], *, max_messages: int, max_prompt_chars: int) -> tuple[Message, ...]:
    """The conversation, if it is within the gateway's limits on messages and characters."""
    if len(msgs) > max_messages:
        raise fail("too_many_messages", f"at most {max_messages} messages")
    if sum(len(m.text()) for m in msgs) > max_prompt_chars:
        raise fail("prompt_too_large", f"the prompt is over {max_prompt_chars} characters")
    return msgs


def to_start_params(body: ChatBody, client_id: str | None, *, max_messages: int, max_prompt_chars: int) -> StartParams:
    request = to_chat_request(body, max_messages=max_messages, max_prompt_chars=max_prompt_chars)
    fallbacks = tuple(body.fallbacks) if body.fallbacks is not None else None
    return StartParams(client_id, body.model, fallbacks, request, body.on_midstream_failure, body.on_refusal)


def describe(exc: ValidationError, what: str = "frame") -> str:
    """A short, stable description of what is wrong with a frame (or body), without echoing its content."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or what
    return f"{where}: {first['msg']}"
