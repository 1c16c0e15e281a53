"""`streamGenerateContent` request validation, as the real API refuses (400 `INVALID_ARGUMENT`).

Field names follow protobuf JSON: camelCase or snake_case are both accepted, anything else is an
"Unknown name". Gemini 2.5 refuses penalties and logprobs, and each model bounds its thinking budget.
"""

from __future__ import annotations

from typing import Any

from tests.emulators import checks as c
from tests.emulators.checks import Invalid

TOP = frozenset(
    {"contents", "systemInstruction", "generationConfig", "tools", "toolConfig", "safetySettings", "cachedContent"}
)
_CONFIG = frozenset(
    {
        "stopSequences",
        "responseMimeType",
        "responseSchema",
        "responseJsonSchema",
        "responseModalities",
        "candidateCount",
        "maxOutputTokens",
        "temperature",
        "topP",
        "topK",
        "seed",
        "presencePenalty",
        "frequencyPenalty",
        "responseLogprobs",
        "logprobs",
        "thinkingConfig",
        "mediaResolution",
        "speechConfig",
        "imageConfig",
    }
)
_PART = frozenset({"text", "thought", "thoughtSignature", "inlineData", "fileData", "functionCall", "functionResponse"})
_DECLARATION = frozenset(
    {"name", "description", "parameters", "parametersJsonSchema", "response", "responseJsonSchema", "behavior"}
)
_MIME = ("text/plain", "application/json", "text/x.enum")


def _unknown(at: str) -> str:
    where = f" at '{at}'" if at else ""
    return 'Invalid JSON payload received. Unknown name "{key}"' + where + ": Cannot find field."


def _fields(value: Any, allowed: frozenset[str], at: str) -> dict[str, Any]:
    """The object with camelCase keys, refusing names the message type does not have."""
    value = c.obj(value, at or "body")
    out = {c.camel(k): v for k, v in value.items()}
    for key, camel in zip(value, out, strict=True):
        if camel not in allowed:
            raise Invalid(_unknown(at).format(key=key), at or key)
    return out


def budget_range(model: str) -> tuple[int, int] | None:
    if "2.5-pro" in model:
        return (128, 32_768)
    if "2.5-flash" in model:
        return (0, 24_576)
    return None


def validate(body: Any, model: str) -> None:
    body = _fields(body, TOP, "")
    contents = c.arr(body.get("contents"), "contents")
    if not contents:
        raise Invalid("* GenerateContentRequest.contents: contents is not specified", "contents")
    for i, content in enumerate(contents):
        _content(content, f"contents[{i}]")
    if "systemInstruction" in body:
        _content(body["systemInstruction"], "system_instruction")
    names = _tools(body.get("tools"))
    if "toolConfig" in body:
        _tool_config(body["toolConfig"], names)
    if "generationConfig" in body:
        _config(body["generationConfig"], model)


def _content(raw: Any, at: str) -> None:
    content = _fields(raw, frozenset({"role", "parts"}), at)
    if "role" in content:
        c.one_of(content["role"], ("user", "model"), f"{at}.role")
    for j, part in enumerate(c.arr(content.get("parts", []), f"{at}.parts")):
        where = f"{at}.parts[{j}]"
        fields = _fields(part, _PART, where)
        if "functionCall" in fields:
            _fields(fields["functionCall"], frozenset({"id", "name", "args"}), f"{where}.function_call")
        if "functionResponse" in fields:
            fr = _fields(
                fields["functionResponse"], frozenset({"id", "name", "response"}), f"{where}.function_response"
            )
            c.obj(fr.get("response"), f"{where}.function_response.response")


def _tools(raw: Any) -> set[str]:
    names: set[str] = set()
    for i, tool in enumerate(c.arr(raw, "tools") if raw is not None else ()):
        fields = _fields(
            tool, frozenset({"functionDeclarations", "googleSearch", "codeExecution", "urlContext"}), f"tools[{i}]"
        )
        for k, decl in enumerate(c.arr(fields.get("functionDeclarations", []), f"tools[{i}].function_declarations")):
            at = f"tools[{i}].function_declarations[{k}]"
            d = _fields(decl, _DECLARATION, at)
            names.add(c.string(d.get("name"), f"{at}.name"))
            if "parameters" in d and "parametersJsonSchema" in d:
                raise Invalid(f"{at}: parameters and parameters_json_schema cannot both be set", at)
    return names


def _tool_config(raw: Any, names: set[str]) -> None:
    cfg = _fields(raw, frozenset({"functionCallingConfig", "retrievalConfig"}), "tool_config")
    if "functionCallingConfig" not in cfg:
        return
    at = "tool_config.function_calling_config"
    fcc = _fields(cfg["functionCallingConfig"], frozenset({"mode", "allowedFunctionNames"}), at)
    mode = c.one_of(fcc.get("mode", "AUTO"), ("AUTO", "ANY", "NONE", "VALIDATED"), f"{at}.mode")
    allowed = fcc.get("allowedFunctionNames")
    if allowed is not None:
        if mode not in ("ANY", "VALIDATED"):
            raise Invalid(f"{at}.allowed_function_names: only allowed when mode is ANY or VALIDATED", at)
        for name in c.arr(allowed, f"{at}.allowed_function_names"):
            if name not in names:
                raise Invalid(f"{at}.allowed_function_names: function '{name}' is not declared", at)
    if mode in ("ANY", "VALIDATED") and not names:
        raise Invalid(f"{at}.mode: function calling mode {mode} needs function declarations", at)


def _config(raw: Any, model: str) -> None:
    at = "generation_config"
    cfg = _fields(raw, _CONFIG, at)
    for key, low, high in (("temperature", 0, 2), ("topP", 0, 1)):
        if key in cfg:
            c.number(cfg[key], f"{at}.{key}", low, high)
    for key in ("topK", "seed", "maxOutputTokens", "candidateCount"):
        if key in cfg:
            c.integer(cfg[key], f"{at}.{key}")
    if "stopSequences" in cfg and len(c.arr(cfg["stopSequences"], f"{at}.stop_sequences")) > 5:
        raise Invalid(f"{at}.stop_sequences: at most 5 stop sequences are allowed", at)
    if ("presencePenalty" in cfg or "frequencyPenalty" in cfg) and "2.5" in model:
        raise Invalid(f"Penalty is not enabled for models/{model}", at)
    if ("responseLogprobs" in cfg or "logprobs" in cfg) and "2.5" in model:
        raise Invalid(f"Logprobs is not enabled for models/{model}", at)
    if "logprobs" in cfg:
        c.integer(cfg["logprobs"], f"{at}.logprobs", 0, 20)
        if cfg.get("responseLogprobs") is not True:
            raise Invalid(f"{at}.logprobs: only allowed when response_logprobs is true", at)
    mime = cfg.get("responseMimeType")
    if mime is not None:
        c.one_of(mime, _MIME, f"{at}.response_mime_type")
    if "responseSchema" in cfg and "responseJsonSchema" in cfg:
        raise Invalid(f"{at}: response_schema and response_json_schema cannot both be set", at)
    if ("responseSchema" in cfg or "responseJsonSchema" in cfg) and mime not in ("application/json", "text/x.enum"):
        raise Invalid(f"{at}: a response schema needs response_mime_type application/json", at)
    if "thinkingConfig" in cfg:
        _thinking(cfg["thinkingConfig"], model, f"{at}.thinking_config")


def _thinking(raw: Any, model: str, at: str) -> None:
    cfg = _fields(raw, frozenset({"includeThoughts", "thinkingBudget", "thinkingLevel"}), at)
    if "thinkingBudget" not in cfg:
        return
    budget = c.integer(cfg["thinkingBudget"], f"{at}.thinking_budget", -1)
    bounds = budget_range(model)
    if bounds is None or budget == -1:
        return
    if budget == 0 and bounds[0] > 0:
        raise Invalid("Budget 0 is invalid. This model only works in thinking mode.", at)
    if not bounds[0] <= budget <= bounds[1] and budget != 0:
        raise Invalid(
            f"The thinking budget {budget} is invalid. Please choose a value between {bounds[0]} and {bounds[1]}.", at
        )
