"""A Chat Completions body as the gateway runs it: each field mapped into `ChatRequest`, or refused by name.

Two sorts of refusal, both `unsupported_parameter` with the field in `param`:
- what would change the kind of answer or lose part of the prompt (`n` above 1, audio, the deprecated
  `functions`, custom tools, predicted outputs, web search, audio or file parts, ...) is always refused;
- what only tunes how the answer is made (`logit_bias`, `verbosity`, `service_tier`, prompt-cache hints, a
  message's `name`, an image's `detail`, ...) is refused when the request is strict, and dropped and reported
  (`DroppedParam`) when it is lenient.
What a particular model cannot take is checked later, against the chain (`sessions.fit`), the same way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from gateway.completions_body import (
    AllowedToolsChoiceIn,
    AssistantIn,
    AudioPartIn,
    CacheControlIn,
    CompletionBody,
    CustomToolCallIn,
    CustomToolIn,
    FilePartIn,
    FunctionMessageIn,
    FunctionToolIn,
    ImagePartIn,
    JsonObjectFormatIn,
    JsonSchemaFormatIn,
    MessageIn,
    NamedChoiceIn,
    NamedCustomChoiceIn,
    RefusalPartIn,
    TextPartIn,
    ToolCallIn,
    ToolMessageIn,
    UserIn,
)
from providers.base import (
    JSON_OBJECT,
    CacheControl,
    ChatRequest,
    ContentPart,
    ImagePart,
    Message,
    Reasoning,
    ResponseFormat,
    TextPart,
    ToolCall,
    ToolChoice,
    ToolSpec,
)
from sessions.errors import GatewayError, fail
from sessions.fit import DroppedParam, ParamPolicy
from sessions.manager import StartParams


@dataclass(slots=True, frozen=True)
class Refusal:
    param: str
    reason: str
    droppable: bool  # a lenient request drops it (and is told) instead of being refused


def refusals(body: CompletionBody) -> list[Refusal]:
    """Every field of `body` the gateway cannot honour for any model, in the body's order."""
    return [*_top_level(body), *(r for i, m in enumerate(body.messages) for r in _message(i, m))]


def _top_level(b: CompletionBody) -> Iterator[Refusal]:
    if b.n is not None and b.n > 1:
        yield Refusal("n", "the gateway returns one choice per request: send n 1 (or leave it out)", False)
    if b.audio is not None or (b.modalities is not None and "audio" in b.modalities):
        yield Refusal("audio" if b.audio is not None else "modalities", "audio output is not supported", False)
    if b.functions is not None or b.function_call is not None:
        which = "functions" if b.functions is not None else "function_call"
        yield Refusal(which, "the deprecated functions are not supported: use tools and tool_choice", False)
    if b.prediction is not None:
        yield Refusal("prediction", "predicted outputs are not supported", False)
    if b.web_search_options is not None:
        yield Refusal("web_search_options", "web search is not supported", False)
    if b.moderation is not None:
        yield Refusal("moderation", "moderation is not supported", False)
    for i, tool in enumerate(b.tools or ()):
        if isinstance(tool, CustomToolIn):
            yield Refusal(f"tools[{i}]", "custom tools are not supported: use function tools", False)
    if isinstance(b.tool_choice, NamedCustomChoiceIn | AllowedToolsChoiceIn):
        yield Refusal("tool_choice", f"tool_choice {b.tool_choice.type} is not supported", False)
    yield from _tuning(b)


def _tuning(b: CompletionBody) -> Iterator[Refusal]:
    """Fields that tune how the answer is made, with no equivalent here: refused, or dropped when lenient."""
    for name, what in (
        ("logit_bias", "takes no logit bias"),
        ("verbosity", "has no verbosity setting"),
        ("prompt_cache_key", "keys no prompt cache"),
        ("prompt_cache_options", "keys no prompt cache"),
        ("prompt_cache_retention", "keys no prompt cache"),
    ):
        if getattr(b, name) is not None:
            yield Refusal(name, f"the gateway {what}", True)
    if b.reasoning_effort == "max":
        yield Refusal("reasoning_effort", "the gateway takes reasoning effort none to xhigh", True)
    if b.service_tier not in (None, "auto", "default"):
        yield Refusal("service_tier", "the gateway asks for no service tier", True)
    if b.store:
        yield Refusal("store", "the gateway stores no completions with the provider", True)
    if b.stream_options is not None and b.stream_options.include_obfuscation:
        yield Refusal("stream_options.include_obfuscation", "the gateway does not obfuscate streams", True)
    if b.max_tokens is not None and b.max_completion_tokens not in (None, b.max_tokens):
        yield Refusal("max_tokens", "max_completion_tokens is the answer's limit instead", True)
    if b.user is not None and b.safety_identifier is not None and b.user != b.safety_identifier:
        yield Refusal("user", "safety_identifier is sent as the end-user id instead", True)


def _message(i: int, m: MessageIn) -> Iterator[Refusal]:
    at = f"messages[{i}]"
    if isinstance(m, FunctionMessageIn):
        yield Refusal(at, "the deprecated function role is not supported: use tool messages", False)
        return
    if m.name is not None and not isinstance(m, ToolMessageIn):  # a tool message's name is its call's
        yield Refusal(f"{at}.name", "the gateway does not pass participant names on", True)
    if isinstance(m, AssistantIn):
        for field in ("audio", "function_call"):
            if getattr(m, field) is not None:
                yield Refusal(f"{at}.{field}", f"an assistant {field} is not supported", False)
        if m.refusal is not None:
            yield Refusal(f"{at}.refusal", "an earlier refusal is not passed on", True)
        for j, call in enumerate(m.tool_calls or ()):
            if isinstance(call, CustomToolCallIn):
                yield Refusal(f"{at}.tool_calls[{j}]", "custom tool calls are not supported", False)
    if isinstance(m.content, list):
        for j, part in enumerate(m.content):
            yield from _part(f"{at}.content[{j}]", part)


def _part(at: str, part: object) -> Iterator[Refusal]:
    if isinstance(part, AudioPartIn | FilePartIn):
        yield Refusal(at, f"{part.type} content is not supported", False)
    if isinstance(part, RefusalPartIn):
        yield Refusal(at, "an earlier refusal is not passed on", True)
    if isinstance(part, TextPartIn | ImagePartIn | FilePartIn) and part.prompt_cache_breakpoint is not None:
        yield Refusal(f"{at}.prompt_cache_breakpoint", "the gateway keys no prompt cache", True)
    if isinstance(part, ImagePartIn) and part.image_url.detail not in (None, "auto"):
        yield Refusal(f"{at}.image_url.detail", "images go to every provider at its own detail", True)


# -- mapping ------------------------------------------------------------------------------------------------------


def _cache(c: CacheControlIn | None) -> CacheControl | None:
    return None if c is None else CacheControl(c.type, c.ttl)


def _content(content: str | Sequence[object] | None) -> str | tuple[ContentPart, ...]:
    if content is None or isinstance(content, str):
        return content or ""
    parts: list[ContentPart] = []
    for p in content:
        if isinstance(p, TextPartIn):
            parts.append(TextPart(p.text, _cache(p.cache_control)))
        elif isinstance(p, ImagePartIn):
            parts.append(ImagePart(p.image_url.url, _cache(p.cache_control)))
    return tuple(parts)


def to_message(m: MessageIn) -> Message:
    cache = _cache(m.cache_control)
    if isinstance(m, ToolMessageIn):
        return Message("tool", _content(m.content), tool_call_id=m.tool_call_id, cache_control=cache)
    if isinstance(m, AssistantIn):
        calls = tuple(
            ToolCall(c.id, c.function.name, c.function.arguments)
            for c in m.tool_calls or ()
            if isinstance(c, ToolCallIn)
        )
        return Message("assistant", _content(m.content), calls, cache_control=cache)
    # developer messages are system messages; a function message is refused before it gets here
    return Message("user" if isinstance(m, UserIn) else "system", _content(m.content), cache_control=cache)


def _tool(t: FunctionToolIn) -> ToolSpec:
    f = t.function
    params = f.parameters if f.parameters is not None else {"type": "object", "properties": {}}
    return ToolSpec(f.name, f.description or "", params, f.strict, _cache(t.cache_control))


def _response_format(b: CompletionBody) -> ResponseFormat | None:
    rf = b.response_format
    if isinstance(rf, JsonObjectFormatIn):
        return JSON_OBJECT
    if isinstance(rf, JsonSchemaFormatIn):
        js = rf.json_schema
        schema = js.schema_ or {"type": "object"}
        return ResponseFormat.json_schema(js.name, schema, strict=js.strict, description=js.description)
    return None  # text, or not asked: the default either way


def _tool_choice(b: CompletionBody) -> ToolChoice | None:
    tc = b.tool_choice
    if isinstance(tc, NamedChoiceIn):
        return ToolChoice("function", tc.function.name)
    if isinstance(tc, str):
        return ToolChoice(tc)
    return None


def _reasoning(b: CompletionBody) -> Reasoning | None:
    effort = b.reasoning_effort
    return None if effort is None or effort == "max" else Reasoning(effort)


def to_chat_request(body: CompletionBody, *, max_messages: int, max_prompt_chars: int) -> ChatRequest:
    """The request every provider receives (fields `refusals` names are left out)."""
    if len(body.messages) > max_messages:
        raise fail("too_many_messages", f"at most {max_messages} messages")
    messages = tuple(to_message(m) for m in body.messages)
    if sum(len(m.text()) for m in messages) > max_prompt_chars:
        raise fail("prompt_too_large", f"the prompt is over {max_prompt_chars} characters")
    b = body
    stop = (b.stop,) if isinstance(b.stop, str) else tuple(b.stop or ())
    return ChatRequest(
        messages,
        b.max_completion_tokens if b.max_completion_tokens is not None else b.max_tokens,
        b.temperature,
        stop,
        tuple(_tool(t) for t in b.tools or () if isinstance(t, FunctionToolIn)),
        response_format=_response_format(b),
        tool_choice=_tool_choice(b),
        parallel_tool_calls=b.parallel_tool_calls,
        top_p=b.top_p,
        top_k=b.top_k,
        seed=b.seed,
        presence_penalty=b.presence_penalty,
        frequency_penalty=b.frequency_penalty,
        reasoning=_reasoning(b),
        logprobs=bool(b.logprobs),
        top_logprobs=b.top_logprobs,
        user=b.safety_identifier if b.safety_identifier is not None else b.user,
        metadata=dict(b.metadata or {}),
    )


def refused(refusal: Refusal, more: int) -> GatewayError:
    also = f" (and {more} more)" if more else ""
    return fail("unsupported_parameter", f"{refusal.param}: {refusal.reason}{also}", details={"param": refusal.param})


def start_params(
    body: CompletionBody, client_id: str | None, *, strict: bool, max_messages: int, max_prompt_chars: int
) -> tuple[StartParams, tuple[Refusal, ...]]:
    """What the session is started with, and the fields the gateway left out (lenient). Raises
    `unsupported_parameter` for the first field it cannot honour (always, or when strict)."""
    found = refusals(body)
    blocking = [r for r in found if not (r.droppable and not strict)]
    if blocking:
        raise refused(blocking[0], len(blocking) - 1)
    dropped = tuple(found)
    request = to_chat_request(body, max_messages=max_messages, max_prompt_chars=max_prompt_chars)
    fallbacks = tuple(body.fallbacks) if body.fallbacks is not None else None
    params = StartParams(
        client_id, body.model, fallbacks, request, body.on_midstream_failure, body.on_refusal, ParamPolicy(strict)
    )
    return params, dropped


def dropped_for(model: str, left_out: tuple[Refusal, ...]) -> tuple[DroppedParam, ...]:
    """The fields the gateway left out, as reported: for the model asked for (no model takes them)."""
    return tuple(DroppedParam(r.param, model, r.reason) for r in left_out)
