"""Chat Completions request validation, as the real API refuses (400 `invalid_request_error`, with `param`).

Top-level names the API does not know, nested keys it does not know, wrong types and out-of-range values
are refused; reasoning models (GPT-5, o-series) refuse the sampling parameters they do not take.
"""

from __future__ import annotations

from typing import Any

from tests.emulators import checks as c
from tests.emulators.checks import Invalid

TOP = frozenset(
    {
        "model",
        "messages",
        "audio",
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "max_tokens",
        "metadata",
        "modalities",
        "n",
        "parallel_tool_calls",
        "prediction",
        "presence_penalty",
        "prompt_cache_key",
        "prompt_cache_retention",
        "reasoning_effort",
        "response_format",
        "safety_identifier",
        "seed",
        "service_tier",
        "stop",
        "store",
        "stream",
        "stream_options",
        "temperature",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "user",
        "verbosity",
        "web_search_options",
    }
)
_UNKNOWN = "Unrecognized request argument supplied: {path}"
_NESTED = "Invalid '{path}': unknown parameter."
_MISSING = "Missing required parameter: '{path}'."
_ROLES = {
    "system": {"role", "content", "name"},
    "developer": {"role", "content", "name"},
    "user": {"role", "content", "name"},
    "assistant": {"role", "content", "name", "tool_calls", "refusal", "audio", "function_call"},
    "tool": {"role", "content", "tool_call_id"},
}
_PARTS = {"text": {"type", "text"}, "image_url": {"type", "image_url"}, "refusal": {"type", "refusal"}}
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
# Reasoning models take only these sampling values (or none at all).
_FIXED = {"temperature": 1, "top_p": 1}
_NOT_ON_REASONING = ("presence_penalty", "frequency_penalty", "logprobs", "top_logprobs", "stop", "max_tokens")


def is_reasoning(model: str) -> bool:
    return model.startswith(("gpt-5", "o1", "o3", "o4")) and "-chat" not in model


def validate(body: Any) -> None:
    body = c.obj(body, "body")
    c.only(body, TOP, "", _UNKNOWN)
    model = c.string(c.required(body, "model", "", _MISSING), "model")
    messages = c.arr(c.required(body, "messages", "", _MISSING), "messages")
    if not messages:
        raise Invalid("Invalid 'messages': empty array. Expected an array with minimum length 1.", "messages")
    for i, m in enumerate(messages):
        _message(m, f"messages[{i}]")
    _sampling(body)
    tools = _tools(body.get("tools"))
    _tool_choice(body, tools)
    _response_format(body.get("response_format"), messages)
    _options(body)
    if is_reasoning(model):
        _reasoning_model(body)
    elif "reasoning_effort" in body and model.startswith("gpt-4"):
        raise Invalid(
            "Unsupported parameter: 'reasoning_effort' is not supported with this model.",
            "reasoning_effort",
            "unsupported_parameter",
        )


def _message(m: Any, where: str) -> None:
    m = c.obj(m, where)
    role = c.one_of(c.required(m, "role", where, _MISSING), _ROLES, f"{where}.role")
    c.only(m, _ROLES[role], where, _NESTED)
    content = m.get("content")
    if isinstance(content, list):
        for j, part in enumerate(content):
            at = f"{where}.content[{j}]"
            part = c.obj(part, at)
            kind = c.one_of(part.get("type"), _PARTS, f"{at}.type")
            c.only(part, _PARTS[kind], at, _NESTED)
            if kind == "image_url":
                c.only(c.obj(part["image_url"], f"{at}.image_url"), {"url", "detail"}, f"{at}.image_url", _NESTED)
    elif content is not None:
        c.string(content, f"{where}.content")
    for k, call in enumerate(m.get("tool_calls") or ()):
        at = f"{where}.tool_calls[{k}]"
        c.only(c.obj(call, at), {"id", "type", "function"}, at, _NESTED)
        c.only(c.obj(call.get("function"), f"{at}.function"), {"name", "arguments"}, f"{at}.function", _NESTED)


def _sampling(body: dict[str, Any]) -> None:
    if "temperature" in body:
        c.number(body["temperature"], "temperature", 0, 2)
    if "top_p" in body:
        c.number(body["top_p"], "top_p", 0, 1)
    for key in ("presence_penalty", "frequency_penalty"):
        if key in body:
            c.number(body[key], key, -2, 2)
    if "seed" in body:
        c.integer(body["seed"], "seed")
    for key in ("max_completion_tokens", "max_tokens"):
        if key in body:
            c.integer(body[key], key, 1)
    if "stop" in body:
        stop = body["stop"]
        if not isinstance(stop, str):
            for i, s in enumerate(c.arr(stop, "stop")):
                c.string(s, f"stop[{i}]")
            if len(stop) > 4:
                raise Invalid(
                    "Invalid 'stop': array too long. Expected an array with maximum length 4.",
                    "stop",
                    "array_above_max_length",
                )
    if "logprobs" in body:
        c.boolean(body["logprobs"], "logprobs")
    if "top_logprobs" in body:
        c.integer(body["top_logprobs"], "top_logprobs", 0, 20)
        if body.get("logprobs") is not True:
            raise Invalid(
                "Invalid value for 'top_logprobs': 'logprobs' must be set to true to use 'top_logprobs'.",
                "top_logprobs",
                "invalid_value",
            )
    if "reasoning_effort" in body:
        c.one_of(body["reasoning_effort"], EFFORTS, "reasoning_effort")


def _tools(raw: Any) -> set[str]:
    names: set[str] = set()
    if raw is None:
        return names
    for i, tool in enumerate(c.arr(raw, "tools")):
        at = f"tools[{i}]"
        tool = c.obj(tool, at)
        c.only(tool, {"type", "function"}, at, _NESTED)
        c.one_of(tool.get("type"), ("function",), f"{at}.type")
        fn = c.obj(c.required(tool, "function", at, _MISSING), f"{at}.function")
        c.only(fn, {"name", "description", "parameters", "strict"}, f"{at}.function", _NESTED)
        name = c.string(c.required(fn, "name", f"{at}.function", _MISSING), f"{at}.function.name")
        if not c.NAME.match(name):
            raise Invalid(
                f"Invalid '{at}.function.name': string does not match pattern '^[a-zA-Z0-9_-]{{1,64}}$'.",
                f"{at}.function.name",
                "invalid_value",
            )
        if "strict" in fn:
            c.boolean(fn["strict"], f"{at}.function.strict")
        if "parameters" in fn:
            c.obj(fn["parameters"], f"{at}.function.parameters")
        names.add(name)
    return names


def _tool_choice(body: dict[str, Any], tools: set[str]) -> None:
    for key in ("tool_choice", "parallel_tool_calls"):
        if key in body and not tools:
            raise Invalid(
                f"Invalid value for '{key}': '{key}' is only allowed when 'tools' are specified.", key, "invalid_value"
            )
    if "parallel_tool_calls" in body:
        c.boolean(body["parallel_tool_calls"], "parallel_tool_calls")
    choice = body.get("tool_choice")
    if choice is None or isinstance(choice, str):
        if choice is not None:
            c.one_of(choice, ("none", "auto", "required"), "tool_choice")
        return
    choice = c.obj(choice, "tool_choice")
    c.only(choice, {"type", "function"}, "tool_choice", _NESTED)
    c.one_of(choice.get("type"), ("function",), "tool_choice.type")
    fn = c.obj(c.required(choice, "function", "tool_choice", _MISSING), "tool_choice.function")
    c.only(fn, {"name"}, "tool_choice.function", _NESTED)
    name = c.string(c.required(fn, "name", "tool_choice.function", _MISSING), "tool_choice.function.name")
    if name not in tools:
        raise Invalid(
            f"Invalid value for 'tool_choice': tool '{name}' is not among the 'tools' given.",
            "tool_choice",
            "invalid_value",
        )


def _response_format(raw: Any, messages: list[Any]) -> None:
    if raw is None:
        return
    rf = c.obj(raw, "response_format")
    kind = c.one_of(rf.get("type"), ("text", "json_object", "json_schema"), "response_format.type")
    if kind != "json_schema":
        c.only(rf, {"type"}, "response_format", _NESTED)
        if kind == "json_object" and not c.count_json_word(messages):
            raise Invalid(
                "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
                "messages",
            )
        return
    c.only(rf, {"type", "json_schema"}, "response_format", _NESTED)
    js = c.obj(c.required(rf, "json_schema", "response_format", _MISSING), "response_format.json_schema")
    at = "response_format.json_schema"
    c.only(js, {"name", "schema", "strict", "description"}, at, _NESTED)
    name = c.string(c.required(js, "name", at, _MISSING), f"{at}.name")
    if not c.NAME.match(name):
        raise Invalid(f"Invalid '{at}.name': string does not match pattern '^[a-zA-Z0-9_-]{{1,64}}$'.", f"{at}.name")
    schema = c.obj(js.get("schema", {}), f"{at}.schema")
    if js.get("strict") is True:
        _strict_schema(schema, name, ())


def _strict_schema(schema: dict[str, Any], name: str, context: tuple[str, ...]) -> None:
    """Strict structured output: every object closes its properties and requires all of them."""
    where = f"Invalid schema for response_format '{name}': In context={context}, "
    if schema.get("type") == "object":
        if schema.get("additionalProperties") is not False:
            raise Invalid(
                where + "'additionalProperties' is required to be supplied and to be false.", "response_format"
            )
        props = schema.get("properties") or {}
        missing = [k for k in props if k not in (schema.get("required") or [])]
        if missing:
            raise Invalid(
                where + f"'required' is required to be supplied and to be an array including every key in properties. "
                f"Missing '{missing[0]}'.",
                "response_format",
            )
        for key, sub in props.items():
            if isinstance(sub, dict):
                _strict_schema(sub, name, (*context, "properties", key))
    for key in ("items",):
        if isinstance(schema.get(key), dict):
            _strict_schema(schema[key], name, (*context, key))
    for key in ("anyOf", "$defs", "definitions"):
        group = schema.get(key)
        subs = group.values() if isinstance(group, dict) else group or ()
        for sub in subs:
            if isinstance(sub, dict):
                _strict_schema(sub, name, (*context, key))


def _options(body: dict[str, Any]) -> None:
    if "metadata" in body and body.get("store") is not True:
        raise Invalid("The 'metadata' parameter is only allowed when 'store' is enabled.", "metadata")
    for key in ("user", "safety_identifier", "prompt_cache_key"):
        if key in body:
            c.string(body[key], key)
    if "safety_identifier" in body and len(body["safety_identifier"]) > 128:
        raise Invalid("Invalid 'safety_identifier': string too long.", "safety_identifier", "string_above_max_length")
    if "stream_options" in body:
        if body.get("stream") is not True:
            raise Invalid("The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options")
        opts = c.obj(body["stream_options"], "stream_options")
        c.only(opts, {"include_usage", "include_obfuscation"}, "stream_options", _NESTED)


def _reasoning_model(body: dict[str, Any]) -> None:
    for key, default in _FIXED.items():
        if key in body and body[key] != default:
            raise Invalid(
                f"Unsupported value: '{key}' does not support {body[key]} with this model. "
                f"Only the default ({default}) value is supported.",
                key,
                "unsupported_value",
            )
    for key in _NOT_ON_REASONING:
        if key in body:
            hint = " Use 'max_completion_tokens' instead." if key == "max_tokens" else ""
            raise Invalid(
                f"Unsupported parameter: '{key}' is not supported with this model.{hint}", key, "unsupported_parameter"
            )
