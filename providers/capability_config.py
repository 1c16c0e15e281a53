"""Model capabilities from operator JSON (`GATEWAY_MODELS` entries' `"capabilities"` object)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, replace
from typing import Any, get_args

from providers.base import ReasoningEffort, ToolChoiceMode
from providers.capabilities import Capabilities, StructuredMode

_RANGES = ("temperature", "top_p")
_INT_RANGES = ("thinking_budget",)
_FLAGS = (
    "strict_tools",
    "parallel_tool_calls",
    "top_k",
    "temperature_with_top_p",
    "seed",
    "penalties",
    "budget_below_max_tokens",
    "sampling_with_reasoning",
    "forced_tool_with_reasoning",
    "prefill_with_reasoning",
    "betas",
)
_OPTIONAL_INTS = ("max_stop", "logprobs")


def capabilities_from_config(raw: Mapping[str, Any], base: Capabilities) -> Capabilities:
    """Operator JSON over `base`, e.g. ``{"json_schema": "tool", "seed": false, "temperature": [0, 1]}``.

    Ranges are ``[low, high]`` or null (not taken at all); sets are lists; unknown keys are an error.
    """
    known = {f.name for f in fields(Capabilities)}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"unknown model capabilities: {sorted(unknown)} (known: {sorted(known)})")
    changes: dict[str, Any] = {}
    for key in ("json_schema", "json_object"):
        if key in raw:
            changes[key] = _choice(raw[key], get_args(StructuredMode), key)
    for key in _FLAGS:
        if key in raw:
            if not isinstance(raw[key], bool):
                raise ValueError(f"capability {key!r} must be true or false")
            changes[key] = raw[key]
    for key in _RANGES:
        if key in raw:
            changes[key] = _pair(raw[key], key, float)
    for key in _INT_RANGES:
        if key in raw:
            changes[key] = _pair(raw[key], key, int)
    for key in _OPTIONAL_INTS:
        if key in raw:
            value = raw[key]
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"capability {key!r} must be a count or null")
            changes[key] = value
    if "tool_choice" in raw:
        modes = get_args(ToolChoiceMode)
        changes["tool_choice"] = frozenset(_choice(v, modes, "tool_choice") for v in raw["tool_choice"])
    if "reasoning_efforts" in raw:
        changes["reasoning_efforts"] = frozenset(
            _choice(v, get_args(ReasoningEffort), "reasoning_efforts") for v in raw["reasoning_efforts"]
        )
    return replace(base, **changes)


def _choice(value: Any, allowed: tuple[str, ...], key: str) -> Any:
    if value not in allowed:
        raise ValueError(f"capability {key!r} takes {', '.join(allowed)}, not {value!r}")
    return value


def _pair(value: Any, key: str, kind: type[float] | type[int]) -> Any:
    if value is None:
        return None
    if not isinstance(value, list | tuple) or len(value) != 2 or any(isinstance(v, bool) for v in value):
        raise ValueError(f"capability {key!r} must be [low, high] or null")
    low, high = kind(value[0]), kind(value[1])
    if low > high:
        raise ValueError(f"capability {key!r}: low is above high")
    return (low, high)
