"""The `generateContent` request body in wire form (camelCase JSON): contents, system instruction, tools,
function-calling config and the generation config (sampling, structured output, logprobs, thinking)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from providers import errors
from providers.base import ChatRequest, ImagePart, Message, ReasoningEffort, TextPart, ToolChoice
from providers.upstream import guess_image_type, split_data_url

# Reasoning effort -> thinkingBudget in tokens (0 turns thinking off where the model allows it).
THINKING_BUDGETS: dict[ReasoningEffort, int] = {
    "none": 0,
    "minimal": 512,
    "low": 1024,
    "medium": 8192,
    "high": 24_576,
    "xhigh": 32_768,
}
_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY", "function": "ANY"}


def _image(part: ImagePart) -> dict[str, Any]:
    inline = split_data_url(part.url)
    if inline is not None:
        try:
            base64.b64decode(inline[1], validate=True)
        except (binascii.Error, ValueError):
            raise errors.BadRequest("an image data: URL is not valid base64", provider="gemini") from None
        return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}
    return {"fileData": {"mimeType": guess_image_type(part.url), "fileUri": part.url}}


def _tool_result(text: str, is_error: bool) -> dict[str, Any]:
    """`functionResponse.response`: an object as given; anything else under `result`, or `error` for a failure."""
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    if is_error:
        return {"error": value}
    return value if isinstance(value, dict) else {"result": value}


def _parts(msg: Message, names: dict[str, str]) -> list[dict[str, Any]]:
    if msg.role == "tool":
        name = names.get(msg.tool_call_id or "", msg.tool_call_id or "tool")
        return [{"functionResponse": {"name": name, "response": _tool_result(msg.text(), msg.is_error)}}]
    parts: list[dict[str, Any]] = []
    if isinstance(msg.content, str):
        if msg.content:
            parts.append({"text": msg.content})
    else:
        for part in msg.content:
            if isinstance(part, TextPart):
                if part.text:
                    parts.append({"text": part.text})
            elif isinstance(part, ImagePart):
                parts.append(_image(part))
    for call in msg.tool_calls:
        names[call.id] = call.name
        try:
            args = json.loads(call.arguments) if call.arguments else {}
        except ValueError:
            args = {}
        parts.append({"functionCall": {"name": call.name, "args": args}})
    return parts


def to_contents(request: ChatRequest) -> list[dict[str, Any]]:
    names: dict[str, str] = {}  # tool call id -> function name (Gemini answers by name)
    out: list[dict[str, Any]] = []
    for msg in request.turns():
        parts = _parts(msg, names)
        if not parts:
            continue
        role = "model" if msg.role == "assistant" else "user"
        if out and out[-1]["role"] == role:
            out[-1]["parts"].extend(parts)
        else:
            out.append({"role": role, "parts": parts})
    return out


def _function_calling(tc: ToolChoice) -> dict[str, Any]:
    config: dict[str, Any] = {"mode": _MODES[tc.mode]}
    if tc.mode == "function":
        config["allowedFunctionNames"] = [tc.name or ""]
    return {"functionCallingConfig": config}


def generation_config(request: ChatRequest) -> dict[str, Any]:
    r = request
    cfg: dict[str, Any] = {}
    for key, name in (
        ("max_tokens", "maxOutputTokens"),
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("seed", "seed"),
    ):
        value = getattr(r, key)
        if value is not None:
            cfg[name] = value
    if r.presence_penalty:  # zero is no penalty: nothing to send
        cfg["presencePenalty"] = r.presence_penalty
    if r.frequency_penalty:
        cfg["frequencyPenalty"] = r.frequency_penalty
    if r.stop:
        cfg["stopSequences"] = list(r.stop)
    rf = r.response_format
    if rf is not None and r.answer_tool is None:
        cfg["responseMimeType"] = "application/json" if rf.is_json else "text/plain"
        if rf.type == "json_schema":
            cfg["responseJsonSchema"] = rf.schema or {"type": "object"}
    if r.wants_logprobs:
        cfg["responseLogprobs"] = True
        if r.top_logprobs:
            cfg["logprobs"] = r.top_logprobs
    rs = r.reasoning
    if rs is not None and (rs.budget_tokens is not None or rs.effort is not None):
        budget = rs.budget_tokens if rs.budget_tokens is not None else THINKING_BUDGETS[rs.effort or "medium"]
        cfg["thinkingConfig"] = {"thinkingBudget": budget}
    return cfg


def _unexpressible(request: ChatRequest) -> str | None:
    """The first field Gemini has no place for (the capability check refuses these earlier)."""
    if request.parallel_tool_calls is False:
        return "parallel_tool_calls"
    for i, tool in enumerate(request.tools):
        if tool.strict:
            return f"tools[{i}].strict"
    return None


def build_body(request: ChatRequest, *, provider: str = "gemini", model: str = "") -> dict[str, Any]:
    """The request body, every field mapped; one Gemini cannot express is refused by name.

    Gemini's Developer API has no end-user id; `user` and `metadata` stay with the gateway, and prompt
    caching is implicit (cache markers are Anthropic's).
    """
    missing = _unexpressible(request)
    if missing is not None:
        raise errors.BadRequest(f"{missing}: Gemini has no such setting", provider=provider, model=model)
    body: dict[str, Any] = {"contents": to_contents(request)}
    system = request.system_prompt()
    if system:
        body["systemInstruction"] = {"parts": [{"text": system}]}
    declarations = [
        {"name": t.name, "description": t.description, "parametersJsonSchema": t.parameters} for t in request.tools
    ]
    rf, answer = request.response_format, request.answer_tool
    if rf is not None and answer is not None:
        # No native structured output: the answer is the arguments of a call the model is made to make.
        declarations.append(
            {"name": answer, "description": rf.tool_description(), "parametersJsonSchema": rf.tool_schema()}
        )
        body["toolConfig"] = _function_calling(ToolChoice("function", answer))
    elif request.tool_choice is not None:
        body["toolConfig"] = _function_calling(request.tool_choice)
    if declarations:
        body["tools"] = [{"functionDeclarations": declarations}]
    cfg = generation_config(request)
    if cfg:
        body["generationConfig"] = cfg
    return body
