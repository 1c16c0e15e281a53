"""Small typed checks shared by the request validators: each raises `Invalid` naming the field."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


class Invalid(Exception):
    """A request the real API would refuse with a 400: the message, and the field as the API names it."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


def obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Invalid(f"Invalid type for '{where}': expected an object.", where, "invalid_type")
    return value


def arr(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise Invalid(f"Invalid type for '{where}': expected an array.", where, "invalid_type")
    return value


def string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise Invalid(f"Invalid type for '{where}': expected a string.", where, "invalid_type")
    return value


def boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"Invalid type for '{where}': expected a boolean.", where, "invalid_type")
    return value


def integer(value: Any, where: str, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"Invalid type for '{where}': expected an integer.", where, "invalid_type")
    _bounds(value, where, low, high, "integer")
    return value


def number(value: Any, where: str, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid(f"Invalid type for '{where}': expected a decimal.", where, "invalid_type")
    _bounds(value, where, low, high, "decimal")
    return float(value)


def _bounds(value: float, where: str, low: float | None, high: float | None, kind: str) -> None:
    if low is not None and value < low:
        raise Invalid(
            f"Invalid '{where}': {kind} below minimum value. Expected a value >= {low:g}, but got {value:g} instead.",
            where,
            f"{kind}_below_min_value",
        )
    if high is not None and value > high:
        raise Invalid(
            f"Invalid '{where}': {kind} above maximum value. Expected a value <= {high:g}, but got {value:g} instead.",
            where,
            f"{kind}_above_max_value",
        )


def one_of(value: Any, allowed: Iterable[str], where: str) -> str:
    options = tuple(allowed)
    if value not in options:
        listed = ", ".join(f"'{o}'" for o in options)
        raise Invalid(f"Invalid value: '{value}'. Supported values are: {listed}.", where, "invalid_value")
    return str(value)


def only(value: Mapping[str, Any], allowed: Iterable[str], where: str, message: str) -> None:
    """Every key of `value` must be in `allowed`; `message` is formatted with the first stranger's path."""
    known = set(allowed)
    for key in value:
        if key not in known:
            path = f"{where}.{key}" if where else key
            raise Invalid(message.format(path=path, key=key), path, "unknown_parameter")


def required(value: Mapping[str, Any], key: str, where: str, message: str) -> Any:
    if key not in value:
        path = f"{where}.{key}" if where else key
        raise Invalid(message.format(path=path, key=key), path, "missing_required_parameter")
    return value[key]


def camel(key: str) -> str:
    """`snake_case` -> `snakeCase`: protobuf JSON takes both spellings of a field."""
    head, *rest = key.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def count_json_word(messages: list[Any]) -> bool:
    """Whether 'json' appears anywhere in the messages' text (OpenAI's JSON-mode precondition)."""
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, str) and "json" in content.lower():
            return True
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and "json" in str(part.get("text", "")).lower():
                    return True
    return False
