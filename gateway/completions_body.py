"""The Chat Completions request body, every field of the current API, validated once per request.

Every model here forbids fields it does not name, so nothing a client sends is dropped unseen: a field the API
does not have is refused as `unsupported_parameter` (`gateway.errors.invalid_body`). Fields the gateway cannot
honour are still declared (loosely typed), so `gateway.completions_request` can refuse them by name, or drop and
report them when the request is lenient. The gateway's own extra fields (`fallbacks`, `on_midstream_failure`,
`on_refusal`, `strict_params`, `top_k`, and Anthropic `cache_control` markers) sit beside the official ones.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.deps import UnknownFieldCode
from providers.base import ReasoningEffort


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CacheControlIn(_Body):
    """An Anthropic prompt-caching breakpoint (an extension: OpenAI has none), passed to Anthropic as given."""

    type: Literal["ephemeral"] = "ephemeral"
    ttl: Literal["5m", "1h"] | None = None


class TextPartIn(_Body):
    type: Literal["text"]
    text: str
    cache_control: CacheControlIn | None = None
    prompt_cache_breakpoint: dict[str, Any] | None = None


class ImageUrlIn(_Body):
    url: str = Field(max_length=20_000_000)
    detail: Literal["auto", "low", "high", "original"] | None = None


class ImagePartIn(_Body):
    type: Literal["image_url"]
    image_url: ImageUrlIn
    cache_control: CacheControlIn | None = None
    prompt_cache_breakpoint: dict[str, Any] | None = None


class AudioPartIn(_Body):
    type: Literal["input_audio"]
    input_audio: dict[str, Any]


class FilePartIn(_Body):
    type: Literal["file"]
    file: dict[str, Any]
    prompt_cache_breakpoint: dict[str, Any] | None = None


class RefusalPartIn(_Body):
    type: Literal["refusal"]
    refusal: str


UserPart = Annotated[TextPartIn | ImagePartIn | AudioPartIn | FilePartIn, Field(discriminator="type")]
AssistantPart = Annotated[TextPartIn | RefusalPartIn, Field(discriminator="type")]


class FunctionCallIn(_Body):
    name: str = Field(min_length=1, max_length=128)
    arguments: str = ""


class ToolCallIn(_Body):
    id: str = Field(min_length=1, max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCallIn


class CustomToolCallIn(_Body):
    id: str = Field(min_length=1, max_length=256)
    type: Literal["custom"]
    custom: dict[str, Any]


class _Message(_Body):
    name: str | None = None
    cache_control: CacheControlIn | None = None


class SystemIn(_Message):
    role: Literal["system"]
    content: str | list[TextPartIn]


class DeveloperIn(_Message):
    role: Literal["developer"]
    content: str | list[TextPartIn]


class UserIn(_Message):
    role: Literal["user"]
    content: str | list[UserPart]


class AssistantIn(_Message):
    role: Literal["assistant"]
    content: str | list[AssistantPart] | None = None
    tool_calls: list[Annotated[ToolCallIn | CustomToolCallIn, Field(discriminator="type")]] | None = None
    function_call: dict[str, Any] | None = None
    refusal: str | None = None
    audio: dict[str, Any] | None = None


class ToolMessageIn(_Message):
    role: Literal["tool"]
    content: str | list[TextPartIn]
    tool_call_id: str = Field(min_length=1, max_length=256)


class FunctionMessageIn(_Message):
    role: Literal["function"]
    content: str | None = None


MessageIn = Annotated[
    SystemIn | DeveloperIn | UserIn | AssistantIn | ToolMessageIn | FunctionMessageIn, Field(discriminator="role")
]


class FunctionDefIn(_Body):
    name: str = Field(min_length=1, max_length=128)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionToolIn(_Body):
    type: Literal["function"]
    function: FunctionDefIn
    cache_control: CacheControlIn | None = None


class CustomToolIn(_Body):
    type: Literal["custom"]
    custom: dict[str, Any]


ToolDefIn = Annotated[FunctionToolIn | CustomToolIn, Field(discriminator="type")]


class NamedFunction(_Body):
    name: str = Field(min_length=1, max_length=128)


class NamedChoiceIn(_Body):
    type: Literal["function"]
    function: NamedFunction


class NamedCustomChoiceIn(_Body):
    type: Literal["custom"]
    custom: dict[str, Any]


class AllowedToolsChoiceIn(_Body):
    type: Literal["allowed_tools"]
    allowed_tools: dict[str, Any]


ToolChoiceIn = (
    Literal["none", "auto", "required"]
    | Annotated[NamedChoiceIn | NamedCustomChoiceIn | AllowedToolsChoiceIn, Field(discriminator="type")]
)


class JsonSchemaIn(_Body):
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class TextFormatIn(_Body):
    type: Literal["text"]


class JsonObjectFormatIn(_Body):
    type: Literal["json_object"]


class JsonSchemaFormatIn(_Body):
    type: Literal["json_schema"]
    json_schema: JsonSchemaIn


ResponseFormatIn = Annotated[TextFormatIn | JsonObjectFormatIn | JsonSchemaFormatIn, Field(discriminator="type")]


class StreamOptionsIn(_Body):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class CompletionBody(_Body, UnknownFieldCode):
    """`POST /v1/chat/completions`. Field order follows the API reference; the gateway's extensions come last."""

    unknown_field_code: ClassVar[str] = "unsupported_parameter"

    model: str = Field(min_length=1, max_length=200)
    messages: list[MessageIn] = Field(min_length=1)
    audio: dict[str, Any] | None = None
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    function_call: Any = None
    functions: list[Any] | None = None
    logit_bias: dict[str, int] | None = None
    logprobs: bool | None = None
    max_completion_tokens: int | None = Field(None, ge=1, le=1_000_000)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    metadata: dict[str, Annotated[str, Field(max_length=512)]] | None = Field(None, max_length=16)
    modalities: list[Literal["text", "audio"]] | None = None
    moderation: dict[str, Any] | None = None
    n: int | None = Field(None, ge=1, le=128)
    parallel_tool_calls: bool | None = None
    prediction: dict[str, Any] | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    prompt_cache_key: str | None = None
    prompt_cache_options: dict[str, Any] | None = None
    prompt_cache_retention: str | None = None
    reasoning_effort: ReasoningEffort | Literal["max"] | None = None
    response_format: ResponseFormatIn | None = None
    safety_identifier: str | None = Field(None, max_length=128)
    seed: int | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority", "fast"] | None = None
    stop: str | list[str] | None = None
    store: bool | None = None
    stream: bool | None = None
    stream_options: StreamOptionsIn | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    tool_choice: ToolChoiceIn | None = None
    tools: list[ToolDefIn] | None = Field(None, max_length=128)
    top_logprobs: int | None = Field(None, ge=0, le=20)
    top_p: float | None = Field(None, ge=0, le=1)
    user: str | None = Field(None, max_length=256)
    verbosity: Literal["low", "medium", "high"] | None = None
    web_search_options: dict[str, Any] | None = None
    # -- the gateway's own fields (`extra_body` in the SDKs) --
    fallbacks: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(None, max_length=8)
    on_midstream_failure: Literal["continue", "restart", "error"] = "continue"
    on_refusal: Literal["error", "fallback"] = "error"
    # Refuse (true) or drop and report (false) what the model cannot take; unset: GATEWAY_STRICT_PARAMS.
    strict_params: bool | None = None
    top_k: int | None = Field(None, ge=1, le=1000)
