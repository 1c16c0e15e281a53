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
class ReasoningDelta:
    """A piece of the model's visible thinking (Anthropic thinking, Gemini thought parts): never answer text.

    Anthropic ends each thinking block with a `signature` (the text is empty then), and sends a redacted block
    whole as `redacted` data: a client sends both back with the turn, for Claude to continue a tool loop."""

    text: str
    signature: str = ""
    redacted: str = ""


@dataclass(slots=True, frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    bytes: tuple[int, ...] | None = None
    top: tuple[TokenLogprob, ...] = ()  # the most likely alternatives at this position, when asked for


@dataclass(slots=True)
class LogprobsDelta:
    """Log probabilities of answer tokens just streamed; only produced when the request asked for them."""

    tokens: tuple[TokenLogprob, ...]


@dataclass(slots=True)
class Usage:
    """Token counts of one attempt. `input_tokens` includes cache reads and cache writes."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0  # read from the provider's prompt cache
    reasoning_tokens: int = 0
    cache_write_input_tokens: int = 0  # written to the prompt cache (Anthropic bills these above input)
    cache_write_1h_input_tokens: int = 0  # of those, written for an hour (Anthropic's `ttl: "1h"`, dearer still)


@dataclass(slots=True)
class Finish:
    reason: FinishReason
    # The provider's own value ("end_turn", "refusal", "SAFETY", …); two finishes with the same reason are equal.
    raw: str | None = field(default=None, compare=False)
    stop_sequence: str | None = field(default=None, compare=False)  # which one stopped it, where the API says


ProviderEvent = TextDelta | ToolCallDelta | ReasoningDelta | LogprobsDelta | Usage | Finish
