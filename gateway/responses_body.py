"""The Responses API request body (`POST /v1/responses`), validated once per request, and its top-level fields
turned into the provider-side request.

Every field of the API is either mapped here or refused with `unsupported_parameter` naming it: a field sent as
`null` (or as its documented default) counts as not sent. `gateway/responses_input.py` reads `input`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from providers.base import ChatRequest, Message, ReasoningEffort, ResponseFormat, ToolChoice, ToolSpec
from providers.base import Reasoning as ReasoningAsked
from sessions.errors import GatewayError, fail


class _In(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class FunctionTool(_In):
    type: Literal["function"]
    name: str = Field(min_length=1, max_length=128)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolChoiceFunction(_In):
    type: Literal["function"]
    name: str = Field(min_length=1, max_length=128)


class TextFormat(_In):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = Field(None, max_length=64)
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    description: str | None = None
    strict: bool | None = None


class TextConfig(_In):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningConfig(_In):
    effort: ReasoningEffort | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class StreamOptions(_In):
    include_obfuscation: bool | None = None


LOGPROBS_INCLUDE = "message.output_text.logprobs"
# Asked for so that reasoning items can be sent back without a kept response (the AI SDK asks for it with
# `store: false` on reasoning models). The gateway sends no reasoning back to a provider, kept or not, so there is
# nothing to encrypt: its reasoning items then say `encrypted_content: null`, and any reasoning item is taken back.
ENCRYPTED_REASONING_INCLUDE = "reasoning.encrypted_content"
INCLUDES = (LOGPROBS_INCLUDE, ENCRYPTED_REASONING_INCLUDE)


class ResponsesBody(_In):
    """The fields the gateway takes (its own extras last); anything else lands in `model_extra` and is refused."""

    model: str = Field(min_length=1, max_length=200)
    input: str | list[dict[str, Any]] = Field(default_factory=list)
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Literal["auto", "none", "required"] | ToolChoiceFunction | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    max_output_tokens: int | None = Field(None, ge=1, le=1_000_000)
    reasoning: ReasoningConfig | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    top_logprobs: int | None = Field(None, ge=0, le=20)
    include: list[str] | None = None
    metadata: dict[str, str] | None = Field(None, max_length=16)
    user: str | None = Field(None, max_length=512)
    safety_identifier: str | None = Field(None, max_length=512)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    store: bool | None = None
    previous_response_id: str | None = Field(None, max_length=200)
    # Defaults of the API that ask for nothing the gateway does not do anyway.
    background: Literal[False] | None = None
    truncation: Literal["disabled"] | None = None
    service_tier: Literal["auto", "default"] | None = None
    # The gateway's own extras, as on Chat Completions.
    fallbacks: list[str] | None = Field(None, max_length=8)
    on_midstream_failure: Literal["continue", "restart", "error"] = "continue"
    on_refusal: Literal["error", "fallback"] = "error"

    @property
    def wants_store(self) -> bool:
        """OpenAI's default: a response is kept unless `store: false`."""
        return self.store is not False

    @property
    def wants_encrypted_reasoning(self) -> bool:
        return ENCRYPTED_REASONING_INCLUDE in (self.include or ())

    @property
    def shows_reasoning(self) -> bool:
        r = self.reasoning
        return r is not None and (r.summary or r.generate_summary) is not None


def shown(value: object) -> str:
    """A value the client sent, named in an error: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 48 else text[:45] + "..."


def unsupported(param: str, why: str) -> GatewayError:
    return fail("unsupported_parameter", f"{param}: {why}", details={"param": param})


def refuse_extras(body: ResponsesBody) -> None:
    """Refuse every field the gateway does not take, by name (a `null` counts as not sent)."""
    for name, value in (body.model_extra or {}).items():
        if value is not None:
            raise unsupported(name, "not supported by this gateway")
    if body.stream_options is not None:
        _no_extras(body.stream_options, "stream_options")
    if body.reasoning is not None:
        _no_extras(body.reasoning, "reasoning")
    for item in body.include or ():
        if item not in INCLUDES:
            raise unsupported("include", f"{shown(item)} is not supported (only {' or '.join(map(repr, INCLUDES))})")
    text = body.text
    if text is not None:
        _no_extras(text, "text")
        if text.verbosity not in (None, "medium"):
            raise unsupported("text.verbosity", "only the default (medium) is supported")
        if text.format is not None:
            _no_extras(text.format, "text.format")


def _no_extras(model: BaseModel, where: str) -> None:
    for name, value in (model.model_extra or {}).items():
        if value is not None:
            raise unsupported(f"{where}.{name}", "not supported by this gateway")


def tools_of(body: ResponsesBody) -> tuple[ToolSpec, ...]:
    out: list[ToolSpec] = []
    for i, raw in enumerate(body.tools or ()):
        kind = raw.get("type")
        if kind != "function":
            raise unsupported(f"tools[{i}].type", f"{shown(kind)} tools are not supported: only function tools")
        tool = FunctionTool.model_validate(raw)
        _no_extras(tool, f"tools[{i}]")
        params = tool.parameters if tool.parameters is not None else {"type": "object", "properties": {}}
        out.append(ToolSpec(tool.name, tool.description or "", params, tool.strict))
    return tuple(out)


def tool_choice_of(body: ResponsesBody) -> ToolChoice | None:
    tc = body.tool_choice
    if tc is None:
        return None
    if isinstance(tc, str):
        return ToolChoice(tc)
    if isinstance(tc, ToolChoiceFunction):
        _no_extras(tc, "tool_choice")
        return ToolChoice("function", tc.name)
    raise unsupported("tool_choice", f"{shown(tc.get('type'))} is not supported: auto, none, required or a function")


def response_format_of(body: ResponsesBody) -> ResponseFormat | None:
    fmt = body.text.format if body.text is not None else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return ResponseFormat("json_object")
    if fmt.schema_ is None or not fmt.name:
        raise fail(
            "invalid_parameter", "text.format: json_schema needs a name and a schema", details={"param": "text.format"}
        )
    return ResponseFormat.json_schema(fmt.name, fmt.schema_, strict=fmt.strict, description=fmt.description)


def reasoning_of(body: ResponsesBody) -> ReasoningAsked | None:
    r = body.reasoning
    if r is None or r.effort is None:
        return None
    return ReasoningAsked(effort=r.effort)


def logprobs_of(body: ResponsesBody) -> tuple[bool, int | None]:
    asked = LOGPROBS_INCLUDE in (body.include or ()) or bool(body.top_logprobs)
    return asked, body.top_logprobs if body.top_logprobs else None


def to_chat_request(body: ResponsesBody, messages: tuple[Message, ...]) -> ChatRequest:
    """The provider-side request for this body and its conversation (what `input` and `instructions` say)."""
    logprobs, top_logprobs = logprobs_of(body)
    return ChatRequest(
        messages,
        body.max_output_tokens,
        body.temperature,
        (),
        tools_of(body),
        response_format=response_format_of(body),
        tool_choice=tool_choice_of(body),
        parallel_tool_calls=body.parallel_tool_calls,
        top_p=body.top_p,
        reasoning=reasoning_of(body),
        logprobs=logprobs,
        top_logprobs=top_logprobs,
        user=body.safety_identifier or body.user,
        metadata=dict(body.metadata or {}),
    )
