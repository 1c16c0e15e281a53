"""Normalized stream events every provider adapter yields.

Plain slotted dataclasses: they are built once per upstream chunk, so they stay cheap
(no validation on the per-token path).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "other"]


@dataclass(slots=True)
class TextDelta:
    text: str


@dataclass(slots=True)
class ToolCallDelta:
    """A piece of a function call. `id`/`name` come on the first piece of a call."""

    index: int
    id: str | None
    name: str | None
    arguments: str


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(slots=True)
class Finish:
    reason: FinishReason
    # The provider's own value ("end_turn", "refusal", "SAFETY", …); two finishes with the same reason are equal.
    raw: str | None = field(default=None, compare=False)


ProviderEvent = TextDelta | ToolCallDelta | Usage | Finish
