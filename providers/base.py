"""The request shape every provider receives and the interface every adapter implements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import KW_ONLY, dataclass, field, replace
from typing import Any, Literal, Protocol

from providers.events import ProviderEvent

Role = Literal["system", "user", "assistant", "tool"]
ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh"]
ToolChoiceMode = Literal["auto", "none", "required", "function"]
ResponseFormatType = Literal["text", "json_object", "json_schema"]


@dataclass(slots=True, frozen=True)
class CacheControl:
    """An Anthropic prompt-caching breakpoint, sent to Anthropic as given.

    The other providers cache repeated prefixes on their own and take no markers.
    """

    type: Literal["ephemeral"] = "ephemeral"
    ttl: Literal["5m", "1h"] | None = None

    def wire(self) -> dict[str, str]:
        return {"type": self.type} if self.ttl is None else {"type": self.type, "ttl": self.ttl}


@dataclass(slots=True, frozen=True)
class TextPart:
    text: str
    cache_control: CacheControl | None = None


@dataclass(slots=True, frozen=True)
class ImagePart:
    """An image by URL; `data:` URLs carry inline base64 data."""

    url: str
    cache_control: CacheControl | None = None


ContentPart = TextPart | ImagePart


@dataclass(slots=True, frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the model produced it


@dataclass(slots=True, frozen=True)
class Thought:
    """A thinking block of an earlier answer, sent back as the provider signed it (or its redacted data). Only
    Anthropic takes these back; other providers are not sent them (they cannot read another's signatures)."""

    text: str
    signature: str = ""
    redacted: str = ""


@dataclass(slots=True, frozen=True)
class Message:
    role: Role
    content: str | tuple[ContentPart, ...] = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None  # for role == "tool"
    cache_control: CacheControl | None = None  # marks the message's last block
    is_error: bool = False  # for role == "tool": the tool failed, and the content says how
    thoughts: tuple[Thought, ...] = ()  # for role == "assistant": its signed thinking, first in the turn

    def tool_output(self) -> str:
        """A tool result's text for an API with no error flag: a failure says so in words."""
        text = self.text()
        return f"Error: {text}" if self.is_error else text

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


@dataclass(slots=True, frozen=True)
class ToolSpec:
    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None  # the arguments must match `parameters` exactly
    cache_control: CacheControl | None = None


@dataclass(slots=True, frozen=True)
class ResponseFormat:
    """What shape the answer's text takes: free text, any JSON object, or JSON matching `schema`.

    `via_tool` is how a model without native structured output is asked for a schema: a forced call of a
    tool whose input is the schema, streamed back as the answer's text. `capabilities.for_model` sets it.
    """

    type: ResponseFormatType = "text"
    name: str = "response"
    schema: dict[str, Any] | None = None
    strict: bool | None = None
    description: str | None = None
    via_tool: bool = False

    @classmethod
    def json_schema(
        cls, name: str, schema: dict[str, Any], *, strict: bool | None = None, description: str | None = None
    ) -> ResponseFormat:
        return cls("json_schema", name, schema, strict, description)

    @property
    def is_json(self) -> bool:
        return self.type != "text"

    def tool_schema(self) -> dict[str, Any]:
        """The input schema of the tool that carries the answer: the schema, or any object for JSON mode."""
        return self.schema if self.type == "json_schema" and self.schema else {"type": "object"}

    def tool_description(self) -> str:
        return self.description or "Give the answer as this tool's input: JSON matching its schema."


JSON_OBJECT = ResponseFormat("json_object")


@dataclass(slots=True, frozen=True)
class ToolChoice:
    """Whether the model may, must or must not call a tool; `function` forces the one named."""

    mode: ToolChoiceMode = "auto"
    name: str | None = None

    @property
    def forces_tool(self) -> bool:
        return self.mode in ("required", "function")


@dataclass(slots=True, frozen=True)
class Reasoning:
    """How much a model thinks before answering: an effort level, or an explicit budget in tokens.

    A budget is what the Messages API's `thinking.budget_tokens` carries; effort is the Chat Completions
    `reasoning_effort`. `effort="none"` turns thinking off where a model allows it.
    """

    effort: ReasoningEffort | None = None
    budget_tokens: int | None = None

    @property
    def active(self) -> bool:
        return self.budget_tokens is not None or (self.effort is not None and self.effort != "none")


@dataclass(slots=True, frozen=True)
class ChatRequest:
    """One request as every provider receives it. Fields past `tools` are keyword-only.

    `None` (or empty) means "not asked for": the provider's default applies and nothing is sent.
    """

    messages: tuple[Message, ...]
    max_tokens: int | None = None
    temperature: float | None = None
    stop: tuple[str, ...] = ()
    tools: tuple[ToolSpec, ...] = ()
    _: KW_ONLY
    response_format: ResponseFormat | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    reasoning: Reasoning | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    user: str | None = None  # an opaque end-user id, for the provider's abuse detection
    metadata: dict[str, str] = field(default_factory=dict)  # the caller's labels, kept by the gateway
    betas: tuple[str, ...] = ()  # Anthropic beta features asked for, sent as `anthropic-beta` (Claude only)

    @property
    def answer_tool(self) -> str | None:
        """The tool whose input is the answer, when structured output goes through a forced tool call."""
        rf = self.response_format
        return rf.name if rf is not None and rf.is_json and rf.via_tool else None

    @property
    def wants_logprobs(self) -> bool:
        return self.logprobs or self.top_logprobs is not None

    @property
    def reasoning_active(self) -> bool:
        return self.reasoning is not None and self.reasoning.active

    def with_messages(self, messages: tuple[Message, ...]) -> ChatRequest:
        """The same request (every field kept) with other messages: what a continuation sends."""
        return replace(self, messages=messages)

    def system_prompt(self) -> str | None:
        parts = [m.text() for m in self.messages if m.role == "system"]
        return "\n\n".join(parts) if parts else None

    def turns(self) -> tuple[Message, ...]:
        return tuple(m for m in self.messages if m.role != "system")


@dataclass(slots=True, frozen=True)
class Credential:
    """What an adapter needs to call upstream for one user. Never logged."""

    api_key: str
    source: Literal["user", "operator", "none"] = "user"

    def __repr__(self) -> str:  # keep keys out of tracebacks and logs
        return f"Credential(source={self.source!r}, api_key=<redacted>)"


class Provider(Protocol):
    """One upstream API. `stream` yields normalized events and raises `ProviderError` subclasses.

    Closing the returned iterator (``aclose``) must close the upstream HTTP response at once.
    """

    name: str

    def stream(
        self, request: ChatRequest, upstream_model: str, credential: Credential
    ) -> AsyncIterator[ProviderEvent]: ...

    async def aclose(self) -> None: ...
