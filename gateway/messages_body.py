"""The Anthropic Messages API request, as the gateway takes it: validated once, then turned into the provider-side
`ChatRequest` any catalog model can serve.

What the gateway cannot honour is refused by name rather than dropped: unknown top-level fields (`service_tier`,
`container`, `mcp_servers`, a top-level `cache_control`, …) and block types it has no place for (`document`,
`search_result`, server tools, file sources) fail validation with the field's path, in Anthropic's words ("Extra
inputs are not permitted"). `docs/api-messages.md` lists what is mapped and what is refused.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.schemas import InCacheControl, cache_mark
from providers.base import (
    ChatRequest,
    ContentPart,
    ImagePart,
    Message,
    Reasoning,
    ResponseFormat,
    TextPart,
    Thought,
    ToolCall,
    ToolChoice,
    ToolChoiceMode,
    ToolSpec,
)
from sessions.errors import fail


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- content blocks -------------------------------------------------------------------------------------------------


class InText(_Strict):
    type: Literal["text"]
    text: str
    cache_control: InCacheControl | None = None


class InBase64Source(_Strict):
    type: Literal["base64"]
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
    data: str = Field(min_length=1)


class InUrlSource(_Strict):
    type: Literal["url"]
    url: str = Field(min_length=1, max_length=20_000)


class InImage(_Strict):
    type: Literal["image"]
    source: Annotated[InBase64Source | InUrlSource, Field(discriminator="type")]
    cache_control: InCacheControl | None = None

    def part(self) -> ImagePart:
        src = self.source
        url = src.url if isinstance(src, InUrlSource) else f"data:{src.media_type};base64,{src.data}"
        return ImagePart(url, cache_mark(self.cache_control))


class InToolUse(_Strict):
    type: Literal["tool_use"]
    id: str = Field(min_length=1, max_length=256)
    name: str = Field(min_length=1, max_length=128)
    input: dict[str, Any]
    cache_control: InCacheControl | None = None


class InToolResult(_Strict):
    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1, max_length=256)
    # Only text reaches every provider's tool results: an image in a tool result is refused here.
    content: str | list[InText] = ""
    is_error: bool = False
    cache_control: InCacheControl | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(b.text for b in self.content)


class InThinking(_Strict):
    """A thinking block of an earlier answer, sent back: forwarded to Anthropic only (see `_assistant`)."""

    type: Literal["thinking"]
    thinking: str
    signature: str = ""


class InRedactedThinking(_Strict):
    type: Literal["redacted_thinking"]
    data: str


Block = Annotated[
    InText | InImage | InToolUse | InToolResult | InThinking | InRedactedThinking, Field(discriminator="type")
]


class InTurn(_Strict):
    role: Literal["user", "assistant"]
    content: str | list[Block]


# -- tools, choices, thinking, output -------------------------------------------------------------------------------


class InTool(_Strict):
    type: Literal["custom"] | None = None
    name: str = Field(min_length=1, max_length=128, pattern=r"^[a-zA-Z0-9_-]+$")
    description: str = ""
    input_schema: dict[str, Any]
    strict: bool | None = None
    cache_control: InCacheControl | None = None
    # Asks for tool input to stream as it is written: it does, as each provider sends it (nothing to forward).
    eager_input_streaming: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _client_tools_only(cls, data: Any) -> Any:
        kind = data.get("type") if isinstance(data, dict) else None
        if kind not in (None, "custom"):
            raise ValueError(f"{kind!r} is a server tool, which this gateway does not run (only client tools)")
        return data

    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description, self.input_schema, self.strict, cache_mark(self.cache_control))


_CHOICES: dict[str, ToolChoiceMode] = {"auto": "auto", "any": "required", "tool": "function", "none": "none"}


class InToolChoice(_Strict):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = Field(None, min_length=1, max_length=128)
    disable_parallel_tool_use: bool | None = None

    @model_validator(mode="after")
    def _named(self) -> InToolChoice:
        if (self.type == "tool") != (self.name is not None):
            raise ValueError("name is required with type 'tool', and only then")
        return self

    def choice(self) -> ToolChoice:
        return ToolChoice(_CHOICES[self.type], self.name)


class InThinkingEnabled(_Strict):
    type: Literal["enabled"]
    budget_tokens: int = Field(ge=1024)


class InThinkingDisabled(_Strict):
    type: Literal["disabled"]


class InJsonFormat(_Strict):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class InOutputConfig(_Strict):
    format: InJsonFormat | None = None


class InMetadata(_Strict):
    user_id: str | None = Field(None, max_length=256)


class MessagesBody(_Strict):
    """`POST /v1/messages`. `fallbacks`, `on_midstream_failure` and `on_refusal` are the gateway's own extra fields
    (`extra_body` in the SDK), as on every other face. Its size limit is the gateway's (`GATEWAY_MAX_FRAME_BYTES`)."""

    model: str = Field(min_length=1, max_length=200)
    messages: list[InTurn] = Field(min_length=1)
    max_tokens: int = Field(ge=1, le=1_000_000)
    system: str | list[InText] | None = None
    stop_sequences: list[Annotated[str, Field(min_length=1)]] | None = None
    stream: bool = False
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0)
    tools: list[InTool] | None = None
    tool_choice: InToolChoice | None = None
    thinking: Annotated[InThinkingEnabled | InThinkingDisabled, Field(discriminator="type")] | None = None
    output_config: InOutputConfig | None = None
    metadata: InMetadata | None = None
    fallbacks: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(None, max_length=8)
    on_midstream_failure: Literal["continue", "restart", "error"] = "continue"
    on_refusal: Literal["error", "fallback"] = "error"


class CountTokensBody(_Strict):
    """`POST /v1/messages/count_tokens`: a Messages request without `max_tokens` or `stream`."""

    model: str = Field(min_length=1, max_length=200)
    messages: list[InTurn] = Field(min_length=1)
    system: str | list[InText] | None = None
    tools: list[InTool] | None = None
    tool_choice: InToolChoice | None = None
    thinking: Annotated[InThinkingEnabled | InThinkingDisabled, Field(discriminator="type")] | None = None
    output_config: InOutputConfig | None = None


# -- into the provider-side request ---------------------------------------------------------------------------------


def _parts(blocks: list[InText] | list[Block], where: str) -> tuple[ContentPart, ...]:
    out: list[ContentPart] = []
    for j, b in enumerate(blocks):
        if isinstance(b, InText):
            out.append(TextPart(b.text, cache_mark(b.cache_control)))
        elif isinstance(b, InImage):
            out.append(b.part())
        else:
            raise fail("invalid_request", f"{where}.{j}: a {b.type} block cannot be in this turn")
    return tuple(out)


def _user(turn: InTurn, where: str) -> list[Message]:
    """A user turn: its tool results (each a tool message, in order), then what the user wrote."""
    if isinstance(turn.content, str):
        return [Message("user", turn.content)]
    out: list[Message] = []
    rest: list[Block] = []
    for b in turn.content:
        if isinstance(b, InToolResult):
            out.append(Message("tool", b.text(), (), b.tool_use_id, cache_mark(b.cache_control), b.is_error))
        else:
            rest.append(b)
    if rest:
        out.append(Message("user", _parts(rest, f"{where}.content")))
    return out


def _assistant(turn: InTurn, where: str) -> Message:
    """An assistant turn: its text, then its tool calls, with its signed thinking blocks kept aside: they reach
    a Claude model with thinking on (which needs them to continue a tool loop), and no other provider (whose
    models cannot read Anthropic's signatures)."""
    if isinstance(turn.content, str):
        return Message("assistant", turn.content)
    text: list[InText] = []
    calls: list[ToolCall] = []
    mark = None
    thoughts: list[Thought] = []
    for j, b in enumerate(turn.content):
        if isinstance(b, InThinking):
            thoughts.append(Thought(b.thinking, b.signature))
        elif isinstance(b, InRedactedThinking):
            thoughts.append(Thought("", redacted=b.data))
        elif isinstance(b, InText):
            text.append(b)
        elif isinstance(b, InToolUse):
            calls.append(ToolCall(b.id, b.name, json.dumps(b.input, ensure_ascii=False)))
            if b.cache_control is not None and j != len(turn.content) - 1:
                # The provider-side turn marks only its last block; a marker inside the turn would move.
                raise fail(
                    "invalid_request", f"{where}.content.{j}.cache_control: only a turn's last tool_use may carry one"
                )
            mark = cache_mark(b.cache_control)
        else:
            raise fail("invalid_request", f"{where}.content.{j}: a {b.type} block cannot be in an assistant turn")
    content: tuple[ContentPart, ...] = tuple(TextPart(b.text, cache_mark(b.cache_control)) for b in text)
    return Message("assistant", content, tuple(calls), None, mark, thoughts=tuple(thoughts))


def _system(system: str | list[InText] | None) -> list[Message]:
    if system is None or system == "" or system == []:
        return []
    if isinstance(system, str):
        return [Message("system", system)]
    return [Message("system", _parts(system, "system"))]


def _reasoning(body: MessagesBody | CountTokensBody) -> Reasoning | None:
    t = body.thinking
    if t is None:
        return None
    return Reasoning(budget_tokens=t.budget_tokens) if isinstance(t, InThinkingEnabled) else Reasoning(effort="none")


def _format(body: MessagesBody | CountTokensBody) -> ResponseFormat | None:
    fmt = body.output_config.format if body.output_config is not None else None
    return None if fmt is None else ResponseFormat.json_schema("response", fmt.schema_)


def to_messages(body: MessagesBody | CountTokensBody) -> tuple[Message, ...]:
    msgs = _system(body.system)
    for i, turn in enumerate(body.messages):
        where = f"messages.{i}"
        if turn.role == "user":
            msgs += _user(turn, where)
        else:
            msgs.append(_assistant(turn, where))
    return tuple(msgs)


def to_chat_request(body: MessagesBody, *, max_messages: int, max_prompt_chars: int) -> ChatRequest:
    msgs = to_messages(body)
    if len(body.messages) > max_messages:
        raise fail("too_many_messages", f"at most {max_messages} messages")
    if sum(len(m.text()) for m in msgs) > max_prompt_chars:
        raise fail("prompt_too_large", f"the prompt is over {max_prompt_chars} characters")
    choice = body.tool_choice
    if choice is not None and choice.name is not None and choice.name not in {t.name for t in body.tools or ()}:
        raise fail("invalid_request", f"tool_choice.name: no tool named {choice.name!r} in tools")
    return ChatRequest(
        msgs,
        body.max_tokens,
        body.temperature,
        tuple(body.stop_sequences or ()),
        tuple(t.spec() for t in body.tools or ()),
        response_format=_format(body),
        tool_choice=None if choice is None else choice.choice(),
        parallel_tool_calls=False if choice is not None and choice.disable_parallel_tool_use else None,
        top_p=body.top_p,
        top_k=body.top_k,
        reasoning=_reasoning(body),
        user=body.metadata.user_id if body.metadata is not None else None,
    )
