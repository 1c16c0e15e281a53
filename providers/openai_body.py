"""The Chat Completions request body in wire form: messages, tools, and every optional field (what the dialect
has no field for is refused by name)."""

from __future__ import annotations

from typing import Any

from providers import errors
from providers.base import ChatRequest, ImagePart, Message, ResponseFormat, TextPart, ToolChoice, ToolSpec


def _content(msg: Message) -> str | list[dict[str, Any]]:
    if isinstance(msg.content, str):
        return msg.content
    parts: list[dict[str, Any]] = []
    for part in msg.content:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            parts.append({"type": "image_url", "image_url": {"url": part.url}})
    return parts


def tool(t: ToolSpec) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": t.name, "description": t.description, "parameters": t.parameters}
    if t.strict is not None:
        fn["strict"] = t.strict
    return {"type": "function", "function": fn}


def _response_format(rf: ResponseFormat) -> dict[str, Any]:
    if rf.type != "json_schema":
        return {"type": rf.type}
    schema: dict[str, Any] = {"name": rf.name, "schema": rf.schema or {"type": "object"}}
    if rf.strict is not None:
        schema["strict"] = rf.strict
    if rf.description:
        schema["description"] = rf.description
    return {"type": "json_schema", "json_schema": schema}


def _tool_choice(tc: ToolChoice) -> str | dict[str, Any]:
    if tc.mode == "function":
        return {"type": "function", "function": {"name": tc.name or ""}}
    return tc.mode


def request_options(
    request: ChatRequest, *, official: bool = True, provider: str = "", model: str = ""
) -> dict[str, Any]:
    """Every optional field in Chat Completions form; what the dialect has no field for is refused by name.

    OpenAI names the end-user id `safety_identifier`; compatible servers still read `user`. The caller's
    `metadata` stays with the gateway (OpenAI takes it only for stored completions, which it never asks).
    """
    p: dict[str, Any] = {}
    r = request
    for key in ("temperature", "top_p", "seed"):
        value = getattr(r, key)
        if value is not None:
            p[key] = value
    for key in ("presence_penalty", "frequency_penalty"):
        if getattr(r, key):  # zero is no penalty: nothing to send
            p[key] = getattr(r, key)
    if r.stop:
        p["stop"] = list(r.stop)
    answer = r.answer_tool
    if answer is not None:
        # No native structured output: the answer is the input of a tool the model is made to call
        # (`params` adds the tool).
        p["tool_choice"] = {"type": "function", "function": {"name": answer}}
    else:
        if r.response_format is not None:
            p["response_format"] = _response_format(r.response_format)
        if r.tool_choice is not None:
            p["tool_choice"] = _tool_choice(r.tool_choice)
    if r.parallel_tool_calls is not None:
        p["parallel_tool_calls"] = r.parallel_tool_calls
    if r.wants_logprobs:
        p["logprobs"] = True
        if r.top_logprobs is not None:
            p["top_logprobs"] = r.top_logprobs
    if r.reasoning is not None:
        if r.reasoning.budget_tokens is not None:
            raise errors.BadRequest(
                "reasoning: a thinking budget in tokens has no Chat Completions field", provider=provider, model=model
            )
        if r.reasoning.effort is not None:
            p["reasoning_effort"] = r.reasoning.effort
    if r.top_k is not None:
        raise errors.BadRequest("top_k: Chat Completions has no such field", provider=provider, model=model)
    if r.user:
        p["safety_identifier" if official else "user"] = r.user
    return p


def to_messages(request: ChatRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for msg in request.messages:
        if msg.role == "tool":
            out.append({"role": "tool", "tool_call_id": msg.tool_call_id or "", "content": msg.tool_output()})
        elif msg.role == "assistant":
            item: dict[str, Any] = {"role": "assistant", "content": msg.text() or None}
            if msg.tool_calls:
                item["tool_calls"] = [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in msg.tool_calls
                ]
            out.append(item)
        else:
            out.append({"role": msg.role, "content": _content(msg)})
    return out
