"""The Messages API request body: messages and system blocks (with cache markers), tools, tool choice,
structured output (native `output_config.format`, or a forced tool call), thinking and sampling."""

from __future__ import annotations

import json
from typing import Any

import anthropic

from providers import errors
from providers.base import (
    CacheControl,
    ChatRequest,
    ContentPart,
    ImagePart,
    Message,
    ResponseFormat,
    TextPart,
    Thought,
    ToolSpec,
)
from providers.upstream import split_data_url

_CHOICES = {"auto": "auto", "required": "any", "function": "tool"}
# Reasoning effort -> thinking budget in tokens; Anthropic takes budgets from 1024 up.
THINKING_BUDGETS: dict[str, int] = {"minimal": 1024, "low": 4096, "medium": 8192, "high": 16384, "xhigh": 24576}
MIN_THINKING_BUDGET = 1024


def _image(part: ImagePart) -> dict[str, Any]:
    inline = split_data_url(part.url)
    if inline is not None:
        return {"type": "image", "source": {"type": "base64", "media_type": inline[0], "data": inline[1]}}
    return {"type": "image", "source": {"type": "url", "url": part.url}}


def _marked(block: dict[str, Any], mark: CacheControl | None) -> dict[str, Any]:
    if mark is not None:
        block["cache_control"] = mark.wire()
    return block


def _part_blocks(content: str | tuple[ContentPart, ...]) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, TextPart):
            if part.text:
                blocks.append(_marked({"type": "text", "text": part.text}, part.cache_control))
        elif isinstance(part, ImagePart):
            blocks.append(_marked(_image(part), part.cache_control))
    return blocks


def _thought(t: Thought) -> dict[str, Any]:
    if t.redacted:
        return {"type": "redacted_thinking", "data": t.redacted}
    return {"type": "thinking", "thinking": t.text, "signature": t.signature}


def _blocks(msg: Message, thinking: bool) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]]
    if msg.role == "tool":
        blocks = [{"type": "tool_result", "tool_use_id": msg.tool_call_id or "", "content": msg.text()}]
        if msg.is_error:
            blocks[0]["is_error"] = True
    else:
        blocks = _part_blocks(msg.content)
    if thinking and msg.thoughts:
        # With thinking on, Claude continues a tool loop only from the turn's own signed thinking, sent first.
        blocks[:0] = [_thought(t) for t in msg.thoughts if t.signature or t.redacted]
    for call in msg.tool_calls:
        try:
            args = json.loads(call.arguments) if call.arguments else {}
        except ValueError:
            args = {}
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": args})
    if blocks and msg.cache_control is not None:
        # A message-level marker caches the prompt up to and including the message's last block.
        blocks[-1]["cache_control"] = msg.cache_control.wire()
    return blocks


def to_messages(request: ChatRequest, thinking: bool = False) -> list[dict[str, Any]]:
    """Turns in Anthropic's shape: tool results ride in user turns; same-role neighbours are merged. Signed
    thinking sent back goes only to a request with thinking on (without it, the API has no use for it)."""
    out: list[dict[str, Any]] = []
    for msg in request.turns():
        role = "assistant" if msg.role == "assistant" else "user"
        blocks = _blocks(msg, thinking)
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return out


def to_system(request: ChatRequest) -> str | list[dict[str, Any]] | None:
    """The system prompt: plain text, or text blocks when some of it carries a cache marker."""
    system = [m for m in request.messages if m.role == "system"]
    marked = any(
        m.cache_control is not None
        or (not isinstance(m.content, str) and any(p.cache_control is not None for p in m.content))
        for m in system
    )
    if not marked:
        return request.system_prompt()
    return [b for m in system for b in _blocks(m, False) if b["type"] == "text"] or None


def _tool(t: ToolSpec) -> dict[str, Any]:
    tool: dict[str, Any] = {"name": t.name, "description": t.description, "input_schema": t.parameters}
    if t.strict is not None:
        tool["strict"] = t.strict
    return _marked(tool, t.cache_control)


def _format_tool(rf: ResponseFormat) -> dict[str, Any]:
    """The tool a model without native structured output is made to call: its input is the answer."""
    return {"name": rf.name, "description": rf.tool_description(), "input_schema": rf.tool_schema()}


def _native_format(rf: ResponseFormat) -> dict[str, Any]:
    """`output_config.format`: the schema in the subset Anthropic's constrained decoding takes.

    The SDK's own transform (what its `parse()` sends) closes every object and moves the constraints the
    decoder cannot enforce (lengths, bounds) into descriptions.
    """
    try:
        schema = anthropic.transform_schema(rf.schema or {"type": "object"})
    except ValueError as exc:
        raise errors.BadRequest(f"response_format: {exc}", provider="anthropic") from None
    return {"format": {"type": "json_schema", "schema": schema}}


def _tool_choice(request: ChatRequest, forced: str | None) -> dict[str, Any] | None:
    if forced is not None:
        return {"type": "tool", "name": forced, "disable_parallel_tool_use": True}
    tc = request.tool_choice
    if tc is None:
        if request.parallel_tool_calls is False and request.tools:
            return {"type": "auto", "disable_parallel_tool_use": True}
        return None
    if tc.mode == "none":
        return {"type": "none"}
    choice: dict[str, Any] = {"type": _CHOICES[tc.mode]}
    if tc.mode == "function":
        choice["name"] = tc.name or ""
    if request.parallel_tool_calls is False:
        choice["disable_parallel_tool_use"] = True
    return choice


def _thinking(request: ChatRequest, max_tokens: int, room: int) -> tuple[dict[str, Any] | None, int]:
    """`thinking` and the max_tokens that leaves for the answer (thinking counts inside max_tokens).

    An effort becomes a budget from THINKING_BUDGETS; a budget the caller's own max_tokens cannot hold is
    lowered under it, and with no max_tokens given the room for the answer is added on top.
    """
    rs = request.reasoning
    if rs is None:
        return None, max_tokens
    if rs.budget_tokens is not None:
        return {"type": "enabled", "budget_tokens": rs.budget_tokens}, max_tokens
    if rs.effort is None:
        return None, max_tokens
    if rs.effort == "none":
        return {"type": "disabled"}, max_tokens
    budget = THINKING_BUDGETS[rs.effort]
    if request.max_tokens is None:
        return {"type": "enabled", "budget_tokens": budget}, max(max_tokens, budget + room)
    budget = min(budget, max_tokens - 1)
    if budget < MIN_THINKING_BUDGET:
        raise errors.BadRequest(f"reasoning_effort needs max_tokens above {MIN_THINKING_BUDGET}", provider="anthropic")
    return {"type": "enabled", "budget_tokens": budget}, max_tokens


def _unexpressible(request: ChatRequest) -> str | None:
    """The first field the Messages API has no place for (the capability check refuses these earlier)."""
    if request.seed is not None:
        return "seed"
    if request.presence_penalty:
        return "presence_penalty"
    if request.frequency_penalty:
        return "frequency_penalty"
    if request.wants_logprobs:
        return "logprobs"
    return None


def forced_tool(request: ChatRequest) -> str | None:
    """The name of the tool whose input is the answer, when structured output goes through a tool call.

    JSON mode has no native form on Anthropic, so it always does; a schema does where the model has no
    native structured output (`ResponseFormat.via_tool`).
    """
    rf = request.response_format
    if rf is None or not rf.is_json or not (rf.via_tool or rf.type == "json_object"):
        return None
    return rf.name


def build_params(
    request: ChatRequest, upstream_model: str, default_max_tokens: int, *, provider: str = "anthropic"
) -> dict[str, Any]:
    """The Messages API body for `request`, every field mapped; a field it has no place for is refused."""
    r = request
    missing = _unexpressible(r)
    if missing is not None:
        raise errors.BadRequest(
            f"{missing}: the Messages API has no such field", provider=provider, model=upstream_model
        )
    thinking, max_tokens = _thinking(r, r.max_tokens or default_max_tokens, default_max_tokens)
    p: dict[str, Any] = {
        "model": upstream_model,
        "messages": to_messages(r, thinking is not None and thinking.get("type") == "enabled"),
        "max_tokens": max_tokens,
        "stream": True,
    }
    system = to_system(r)
    if system:
        p["system"] = system
    for key in ("temperature", "top_p", "top_k"):
        value = getattr(r, key)
        if value is not None:
            p[key] = value
    if r.stop:
        p["stop_sequences"] = list(r.stop)
    tools = [_tool(t) for t in r.tools]
    forced = forced_tool(r)
    if forced is not None:
        assert r.response_format is not None
        tools.append(_format_tool(r.response_format))
    elif r.response_format is not None and r.response_format.type == "json_schema":
        p["output_config"] = _native_format(r.response_format)
    if tools:
        p["tools"] = tools
    choice = _tool_choice(r, forced)
    if choice is not None:
        p["tool_choice"] = choice
    if thinking is not None:
        p["thinking"] = thinking
    if r.user:
        p["metadata"] = {"user_id": r.user}
    return p
