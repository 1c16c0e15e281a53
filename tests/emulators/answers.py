"""What a model that honours the request writes: JSON for a schema or JSON mode, a call for a forced tool.

`shape(provider, script, body)` turns the scripted answer into the one the request demands, unless the
script already says (`json=` for the JSON value, `tool_call=` for the call). JSON goes out in small pieces,
so faults placed by token count land inside it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from tests.emulators.script import Script, ToolCallScript

PIECE = 6  # characters of JSON per streamed token
_FORMATS = {
    "date-time": "2024-05-01T12:00:00Z",
    "date": "2024-05-01",
    "email": "a@example.com",
    "uri": "https://example.com",
}


def sample(schema: Any, defs: dict[str, Any] | None = None) -> Any:
    """A value that validates against `schema` (the subset of JSON Schema that structured outputs use)."""
    if not isinstance(schema, dict):
        return None
    defs = {**(defs or {}), **schema.get("$defs", {}), **schema.get("definitions", {})}
    if "$ref" in schema:
        return sample(defs.get(str(schema["$ref"]).rsplit("/", 1)[-1]), defs)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            variants = [v for v in schema[key] if not (isinstance(v, dict) and v.get("type") == "null")]
            return sample((variants or schema[key])[0], defs)
    if schema.get("allOf"):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            merged.update(sample(part, defs) or {})
        return merged
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        return {k: sample(v, defs) for k, v in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [sample(schema.get("items", {}), defs)] * max(1, int(schema.get("minItems", 1)))
    if kind == "string":
        return _FORMATS.get(str(schema.get("format")), "text")
    return {"integer": 7, "number": 2.5, "boolean": True}.get(str(kind))


def pieces(value: Any) -> tuple[str, ...]:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return tuple(text[i : i + PIECE] for i in range(0, len(text), PIECE))


def _json_mode_value(script: Script) -> Any:
    return script.json if script.json is not None else {"answer": "".join(script.pieces())}


def shape(provider: str, script: Script, body: Any) -> Script:
    if not isinstance(body, dict) or script.status is not None:
        return script
    demand = {"openai": _openai, "anthropic": _anthropic, "gemini": _gemini}[provider](body)
    if demand is None:
        return script
    kind, schema, tool = demand
    if kind == "tool":
        if script.tool_call is not None:
            return script
        value = script.json if script.json is not None else sample(schema)
        call = ToolCallScript(tool or "tool", pieces(value), "call_emu_forced")
        return replace(script, text=(), tool_call=call, finish="tool_calls")
    value = sample(schema) if kind == "schema" and script.json is None else _json_mode_value(script)
    return replace(script, text=pieces(value), tool_call=None)


Demand = tuple[str, Any, str | None] | None  # ("schema" | "json" | "tool", the schema, the tool's name)


def _tool_schema(tools: list[Any], name: str | None, params: str) -> tuple[str, Any, str | None]:
    for tool in tools:
        fn = tool.get("function", tool) if isinstance(tool, dict) else {}
        if name is None or fn.get("name") == name:
            return "tool", fn.get(params), fn.get("name")
    return "tool", {}, name


def _openai(body: dict[str, Any]) -> Demand:
    rf = body.get("response_format") or {}
    if rf.get("type") == "json_schema":
        return "schema", (rf.get("json_schema") or {}).get("schema", {}), None
    if rf.get("type") == "json_object":
        return "json", None, None
    choice = body.get("tool_choice")
    tools = body.get("tools") or []
    if choice == "required":
        return _tool_schema(tools, None, "parameters")
    if isinstance(choice, dict):
        return _tool_schema(tools, (choice.get("function") or {}).get("name"), "parameters")
    return None


def _anthropic(body: dict[str, Any]) -> Demand:
    fmt = (body.get("output_config") or {}).get("format")
    if isinstance(fmt, dict):
        return "schema", fmt.get("schema", {}), None
    choice = body.get("tool_choice") or {}
    tools = body.get("tools") or []
    if choice.get("type") == "any":
        return _tool_schema(tools, None, "input_schema")
    if choice.get("type") == "tool":
        return _tool_schema(tools, choice.get("name"), "input_schema")
    return None


def _gemini(body: dict[str, Any]) -> Demand:
    config = body.get("generationConfig") or body.get("generation_config") or {}
    schema = config.get("responseJsonSchema") or config.get("response_json_schema")
    if schema is not None:
        return "schema", schema, None
    if (config.get("responseMimeType") or config.get("response_mime_type")) == "application/json":
        return "json", None, None
    tool_config = body.get("toolConfig") or body.get("tool_config") or {}
    fcc = tool_config.get("functionCallingConfig") or tool_config.get("function_calling_config") or {}
    if fcc.get("mode") == "ANY":
        decls = [d for t in body.get("tools") or [] for d in t.get("functionDeclarations", [])]
        names = fcc.get("allowedFunctionNames") or [None]
        return _tool_schema(decls, names[0], "parametersJsonSchema")
    return None
