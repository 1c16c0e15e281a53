"""The Responses API `input` (a string, or items) as the conversation every provider receives.

Items the gateway reads: messages (`user`, `system`, `developer` with `input_text`/`input_image` parts,
`assistant` with `output_text`/`refusal` parts), `function_call`, `function_call_output`, `item_reference` (an
item of a response the gateway kept) and `reasoning` (accepted, not sent: providers take back only their own
signed thinking). Anything else is refused by name with its position, e.g. `input[2].type`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from gateway.responses_body import shown, unsupported
from providers.base import ContentPart, ImagePart, Message, Role, TextPart, ToolCall
from sessions.errors import GatewayError, fail

Item = dict[str, Any]

# The fields each item may carry beyond its content: ids and statuses the API echoes back, which change nothing.
_ALLOWED: dict[str, frozenset[str]] = {
    "message": frozenset({"type", "role", "content", "id", "status", "phase"}),
    "function_call": frozenset({"type", "call_id", "name", "arguments", "id", "status"}),
    "function_call_output": frozenset({"type", "call_id", "output", "id", "status"}),
    "reasoning": frozenset({"type", "id", "summary", "content", "encrypted_content", "status"}),
    "item_reference": frozenset({"type", "id"}),
}
_ROLES: dict[str, Role] = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}


def invalid(param: str, why: str) -> GatewayError:
    return fail("invalid_parameter", f"{param}: {why}", details={"param": param})


def as_items(raw: str | Sequence[Item]) -> list[Item]:
    """The input as a list of items: a string is one user message."""
    if isinstance(raw, str):
        return [{"type": "message", "role": "user", "content": raw}]
    return [dict(item) for item in raw]


def type_of(item: Mapping[str, Any]) -> Any:
    # An "easy" message has a role and no type.
    return item.get("type", "message" if "role" in item else None)


def references(items: Sequence[Item]) -> list[str]:
    """The ids of the `item_reference` items, to look up before `resolve`."""
    return [str(item.get("id")) for item in items if type_of(item) == "item_reference"]


def resolve(items: Sequence[Item], found: Mapping[str, Item]) -> list[Item]:
    """The items with each reference replaced by the item it names (`found`: id -> item)."""
    out: list[Item] = []
    for i, item in enumerate(items):
        if type_of(item) != "item_reference":
            out.append(item)
            continue
        ref = found.get(str(item.get("id")))
        if ref is None:
            raise fail(
                "response_not_found",
                f"input[{i}].id: no kept item {shown(item.get('id'))} (only items of responses stored here are known)",
                details={"param": f"input[{i}].id"},
            )
        out.append(ref)
    return out


def to_messages(items: Sequence[Item], instructions: str | None) -> tuple[Message, ...]:
    """The conversation: `instructions` as the system prompt, then each item in order (function calls join the
    assistant turn before them)."""
    msgs: list[Message] = [Message("system", instructions)] if instructions else []
    for i, item in enumerate(items):
        kind = type_of(item)
        allowed = _ALLOWED.get(kind) if isinstance(kind, str) else None
        if allowed is None:
            raise unsupported(f"input[{i}].type", f"{shown(kind)} items are not supported")
        for key, value in item.items():
            if key not in allowed and value is not None:
                raise unsupported(f"input[{i}].{key}", "not supported by this gateway")
        if kind == "message":
            msgs.append(_message(item, f"input[{i}]"))
        elif kind == "function_call":
            _add_call(msgs, item, f"input[{i}]")
        elif kind == "function_call_output":
            msgs.append(_call_output(item, f"input[{i}]"))
        elif kind == "item_reference":
            raise invalid(f"input[{i}]", "an item_reference must be resolved first")
    return tuple(msgs)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise invalid(where, "must be a string")
    return value


def _message(item: Item, where: str) -> Message:
    role = _ROLES.get(str(item.get("role")))
    if role is None:
        raise invalid(f"{where}.role", "must be user, system, developer or assistant")
    content = item.get("content")
    if isinstance(content, str):
        return Message(role, content)
    if not isinstance(content, list):
        raise invalid(f"{where}.content", "must be a string or a list of parts")
    parts = tuple(_part(p, role, f"{where}.content[{j}]") for j, p in enumerate(content))
    if role != "user":  # only a user turn takes images: the others are text
        return Message(role, "".join(p.text for p in parts if isinstance(p, TextPart)))
    return Message(role, parts)


def _part(part: Any, role: Role, where: str) -> ContentPart:
    if not isinstance(part, dict):
        raise invalid(where, "must be an object")
    kind = part.get("type")
    if role == "assistant" and kind in ("output_text", "input_text"):
        _only(part, {"type", "text", "annotations", "logprobs"}, where)
        return TextPart(_text(part.get("text"), f"{where}.text"))
    if role == "assistant" and kind == "refusal":
        _only(part, {"type", "refusal"}, where)
        return TextPart(_text(part.get("refusal"), f"{where}.refusal"))
    if role != "assistant" and kind == "input_text":
        _only(part, {"type", "text"}, where)
        return TextPart(_text(part.get("text"), f"{where}.text"))
    if role == "user" and kind == "input_image":
        _only(part, {"type", "image_url", "detail"}, where)
        if part.get("detail") not in (None, "auto"):
            raise unsupported(f"{where}.detail", "only auto is supported")
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise unsupported(f"{where}.image_url", "an image is taken by URL or data: URL (no file_id)")
        return ImagePart(url)
    raise unsupported(f"{where}.type", f"{shown(kind)} parts are not supported in a {role} message")


def _only(part: Mapping[str, Any], keys: set[str], where: str) -> None:
    for key, value in part.items():
        if key not in keys and value is not None:
            raise unsupported(f"{where}.{key}", "not supported by this gateway")


def _add_call(msgs: list[Message], item: Item, where: str) -> None:
    call = ToolCall(
        _text(item.get("call_id"), f"{where}.call_id"),
        _text(item.get("name"), f"{where}.name"),
        _text(item.get("arguments", ""), f"{where}.arguments"),
    )
    last = msgs[-1] if msgs else None
    if last is not None and last.role == "assistant":
        msgs[-1] = replace(last, tool_calls=(*last.tool_calls, call))
    else:
        msgs.append(Message("assistant", "", (call,)))


def _call_output(item: Item, where: str) -> Message:
    call_id = _text(item.get("call_id"), f"{where}.call_id")
    output = item.get("output")
    if isinstance(output, list):
        texts = []
        for j, part in enumerate(output):
            if not isinstance(part, dict) or part.get("type") != "input_text":
                raise unsupported(f"{where}.output[{j}].type", "a function's output is text")
            texts.append(_text(part.get("text"), f"{where}.output[{j}].text"))
        output = "".join(texts)
    return Message("tool", _text(output, f"{where}.output"), tool_call_id=call_id)
