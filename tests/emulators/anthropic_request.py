"""Messages API request validation, as the real API refuses (400 `invalid_request_error`).

Unknown fields anywhere are refused ("Extra inputs are not permitted"), as are malformed content blocks,
cache_control markers beyond four, thinking with sampling changes or a forced tool call, and structured
output or strict tools on a model without them.
"""

from __future__ import annotations

from typing import Any

from tests.emulators import checks as c
from tests.emulators import wire
from tests.emulators.checks import Invalid

TOP = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "tools",
        "tool_choice",
        "metadata",
        "thinking",
        "output_config",
        "cache_control",
        "service_tier",
        "container",
        "inference_geo",
        "speed",
        "diagnostics",
        "user_profile_id",
        "mcp_servers",
        "context_management",
    }
)
_EXTRA = "{path}: Extra inputs are not permitted"
_MISSING = "{path}: Field required"
_CACHE = {"cache_control"}
_BLOCKS = {
    "text": {"type", "text", "citations"} | _CACHE,
    "image": {"type", "source"} | _CACHE,
    "document": {"type", "source", "title", "context", "citations"} | _CACHE,
    "tool_use": {"type", "id", "name", "input"} | _CACHE,
    "tool_result": {"type", "tool_use_id", "content", "is_error"} | _CACHE,
    "thinking": {"type", "thinking", "signature"},
    "redacted_thinking": {"type", "data"},
}
# Models with JSON outputs (`output_config.format`) and strict tools; older ones refuse both.
_STRUCTURED = ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-5", "claude-sonnet-4-6", "claude-opus-4-6")
# Models that take temperature or top_p, not both.
_ONE_SAMPLER = ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1")
MAX_BREAKPOINTS = 4


def validate(body: Any) -> None:
    body = c.obj(body, "body")
    c.only(body, TOP, "", _EXTRA)
    model = c.string(c.required(body, "model", "", _MISSING), "model")
    max_tokens = c.integer(c.required(body, "max_tokens", "", _MISSING), "max_tokens", 1)
    messages = c.arr(c.required(body, "messages", "", _MISSING), "messages")
    breakpoints = _system(body.get("system"))
    for i, m in enumerate(messages):
        breakpoints += _message(m, f"messages.{i}")
    tools, tool_points = _tools(body.get("tools"), model)
    breakpoints += tool_points
    if breakpoints > MAX_BREAKPOINTS:
        raise Invalid(f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {breakpoints}.")
    _sampling(body, model)
    _tool_choice(body.get("tool_choice"), tools)
    _thinking(body, max_tokens, messages)
    _output_config(body.get("output_config"), model)
    if "metadata" in body:
        meta = c.obj(body["metadata"], "metadata")
        c.only(meta, {"user_id"}, "metadata", _EXTRA)
        if meta.get("user_id") is not None:
            c.string(meta["user_id"], "metadata.user_id")
    if "stop_sequences" in body:
        for i, s in enumerate(c.arr(body["stop_sequences"], "stop_sequences")):
            c.string(s, f"stop_sequences.{i}")


def _cache(block: dict[str, Any], where: str) -> int:
    if block.get("cache_control") is None:
        return 0
    cc = c.obj(block["cache_control"], f"{where}.cache_control")
    c.only(cc, {"type", "ttl"}, f"{where}.cache_control", _EXTRA)
    c.one_of(cc.get("type"), ("ephemeral",), f"{where}.cache_control.type")
    if "ttl" in cc:
        c.one_of(cc["ttl"], ("5m", "1h"), f"{where}.cache_control.ttl")
    return 1


def _block(block: Any, where: str) -> int:
    block = c.obj(block, where)
    kind = c.one_of(block.get("type"), _BLOCKS, f"{where}.type")
    c.only(block, _BLOCKS[kind], where, _EXTRA)
    if kind == "text":
        if not c.string(block.get("text"), f"{where}.text"):
            raise Invalid(f"{where}: text content blocks must be non-empty")
    elif kind == "tool_use":
        c.string(block.get("id"), f"{where}.id")
        c.string(block.get("name"), f"{where}.name")
        c.obj(block.get("input"), f"{where}.input")
    elif kind == "tool_result":
        c.string(block.get("tool_use_id"), f"{where}.tool_use_id")
    return _cache(block, where)


def _system(raw: Any) -> int:
    if raw is None or isinstance(raw, str):
        return 0
    points = 0
    for i, block in enumerate(c.arr(raw, "system")):
        at = f"system.{i}"
        if c.obj(block, at).get("type") != "text":
            raise Invalid(f"{at}.type: Input should be 'text'")
        points += _block(block, at)
    return points


def _message(m: Any, where: str) -> int:
    m = c.obj(m, where)
    c.only(m, {"role", "content"}, where, _EXTRA)
    c.one_of(c.required(m, "role", where, _MISSING), ("user", "assistant"), f"{where}.role")
    content = c.required(m, "content", where, _MISSING)
    if isinstance(content, str):
        return 0
    return sum(_block(b, f"{where}.content.{j}") for j, b in enumerate(c.arr(content, f"{where}.content")))


def _tools(raw: Any, model: str) -> tuple[set[str], int]:
    names: set[str] = set()
    points = 0
    for i, tool in enumerate(c.arr(raw, "tools") if raw is not None else ()):
        at = f"tools.{i}"
        tool = c.obj(tool, at)
        allowed = {"name", "description", "input_schema", "cache_control", "strict", "type", "input_examples"}
        c.only(tool, allowed, at, _EXTRA)
        name = c.string(c.required(tool, "name", at, _MISSING), f"{at}.name")
        if not c.NAME.match(name):
            raise Invalid(f"{at}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")
        schema = c.obj(c.required(tool, "input_schema", at, _MISSING), f"{at}.input_schema")
        if schema.get("type") != "object":
            raise Invalid(f"{at}.input_schema.type: Input should be 'object'")
        if tool.get("strict") and not model.startswith(_STRUCTURED):
            raise Invalid(f"{at}.strict: strict tool use is not supported on this model.")
        points += _cache(tool, at)
        names.add(name)
    return names, points


def _sampling(body: dict[str, Any], model: str) -> None:
    if "temperature" in body:
        c.number(body["temperature"], "temperature", 0, 1)
    if "top_p" in body:
        c.number(body["top_p"], "top_p", 0, 1)
    if "top_k" in body:
        c.integer(body["top_k"], "top_k", 0)
    if "temperature" in body and "top_p" in body and model.startswith(_ONE_SAMPLER):
        raise Invalid("`temperature` and `top_p` cannot both be specified for this model. Please use only one.")


def _tool_choice(raw: Any, tools: set[str]) -> None:
    if raw is None:
        return
    choice = c.obj(raw, "tool_choice")
    kind = c.one_of(choice.get("type"), ("auto", "any", "tool", "none"), "tool_choice.type")
    allowed = {"type"} if kind == "none" else {"type", "disable_parallel_tool_use"}
    c.only(choice, allowed | ({"name"} if kind == "tool" else set()), "tool_choice", _EXTRA)
    if "disable_parallel_tool_use" in choice:
        c.boolean(choice["disable_parallel_tool_use"], "tool_choice.disable_parallel_tool_use")
    if kind == "tool":
        name = c.string(c.required(choice, "name", "tool_choice", _MISSING), "tool_choice.name")
        if name not in tools:
            raise Invalid(f"tool_choice.name: Tool '{name}' not found in provided tools")
    if kind in ("any", "tool") and not tools:
        raise Invalid("tool_choice: a tool must be provided when tool_choice forces tool use")


def _thinking(body: dict[str, Any], max_tokens: int, messages: list[Any]) -> None:
    raw = body.get("thinking")
    if raw is None:
        return
    thinking = c.obj(raw, "thinking")
    kind = c.one_of(thinking.get("type"), ("enabled", "disabled", "adaptive"), "thinking.type")
    if kind != "enabled":
        c.only(thinking, {"type", "display"} if kind == "adaptive" else {"type"}, "thinking", _EXTRA)
        if kind == "adaptive":
            raise Invalid("thinking.type: adaptive thinking is not supported on this model")
        return
    c.only(thinking, {"type", "budget_tokens", "display"}, "thinking", _EXTRA)
    budget = c.integer(c.required(thinking, "budget_tokens", "thinking", _MISSING), "thinking.budget_tokens", 1024)
    if budget >= max_tokens:
        raise Invalid("`max_tokens` must be greater than `thinking.budget_tokens`.")
    if "temperature" in body and body["temperature"] != 1:
        raise Invalid("`temperature` may only be set to 1 when thinking is enabled.")
    if "top_k" in body:
        raise Invalid("`top_k` may not be set when thinking is enabled.")
    if "top_p" in body and body["top_p"] < 0.95:
        raise Invalid("`top_p` must be between 0.95 and 1 when thinking is enabled.")
    choice = body.get("tool_choice") or {}
    if choice.get("type") in ("any", "tool"):
        raise Invalid("Thinking may not be enabled when tool_choice forces tool use.")
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    if last.get("role") == "assistant":
        raise Invalid(
            f"messages.{len(messages) - 1}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
            "`text`. When `thinking` is enabled, a final `assistant` message must start with a thinking block."
        )
    _signed_thinking(messages)


def _blocks_of(m: Any) -> list[Any]:
    content = m.get("content") if isinstance(m, dict) else None
    return content if isinstance(content, list) else []


def _signed_thinking(messages: list[Any]) -> None:
    """As the API does with thinking on: every thinking block sent back carries the signature it was issued with,
    and the assistant turn whose tool calls the last user turn answers starts with its thinking."""
    for i, m in enumerate(messages):
        for j, b in enumerate(_blocks_of(m)):
            if isinstance(b, dict) and b.get("type") == "thinking" and b.get("signature") != wire.SIGNATURE:
                raise Invalid(f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block")
    answered = len(messages) >= 2 and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in _blocks_of(messages[-1])
    )
    if not answered:
        return
    first: Any = next(iter(_blocks_of(messages[-2])), {})
    kind = first.get("type") if isinstance(first, dict) else None
    if kind not in ("thinking", "redacted_thinking"):
        raise Invalid(
            f"messages.{len(messages) - 2}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
            f"`{kind}`. When `thinking` is enabled, a final `assistant` message must start with a thinking block "
            "(preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you include thinking "
            "blocks from previous turns. To avoid this requirement, disable `thinking`."
        )


def _output_config(raw: Any, model: str) -> None:
    if raw is None:
        return
    cfg = c.obj(raw, "output_config")
    c.only(cfg, {"format", "effort"}, "output_config", _EXTRA)
    if "effort" in cfg:
        raise Invalid("output_config.effort: This model does not support the effort parameter.")
    if cfg.get("format") is None:
        return
    fmt = c.obj(cfg["format"], "output_config.format")
    c.only(fmt, {"type", "schema"}, "output_config.format", _EXTRA)
    c.one_of(fmt.get("type"), ("json_schema",), "output_config.format.type")
    if not model.startswith(_STRUCTURED):
        raise Invalid(f"output_config.format: structured outputs are not supported on model '{model}'.")
    _closed_objects(c.obj(c.required(fmt, "schema", "output_config.format", _MISSING), "schema"), "schema")


def _closed_objects(schema: dict[str, Any], where: str) -> None:
    """Constrained decoding needs every object closed (`additionalProperties: false`)."""
    if schema.get("type") == "object" and schema.get("additionalProperties") is not False:
        raise Invalid(f"output_config.format.{where}: For 'object' type, 'additionalProperties' must be set to false")
    for key, sub in (schema.get("properties") or {}).items():
        if isinstance(sub, dict):
            _closed_objects(sub, f"{where}.properties.{key}")
    subs: list[Any] = [schema.get("items")]
    for key in ("anyOf", "allOf"):
        subs += schema.get(key) or []
    subs += list((schema.get("$defs") or {}).values())
    for sub in subs:
        if isinstance(sub, dict):
            _closed_objects(sub, where)
