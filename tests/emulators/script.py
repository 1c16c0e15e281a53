"""What the emulator does for one request: a plain dataclass, also buildable from JSON (admin endpoint)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any, Literal

Finish = Literal["stop", "length", "tool_calls", "content_filter"]
# Failures each API reports in its own way (the exact bodies are in `wire.py`).
ErrorKind = Literal["context_length", "refusal"]
# Which part of the partial answer the request carried a continuation repeats before its own text.
Echo = Literal["whole", "middle", "last_sentence"]

_WORD = re.compile(r"\s*\S+|\s+")


def split_words(text: str) -> tuple[str, ...]:
    """'Hello big world' -> ('Hello', ' big', ' world'): leading spaces stay with their word."""
    return tuple(_WORD.findall(text))


@dataclass(slots=True)
class ToolCallScript:
    name: str = "get_weather"
    # The arguments JSON as streamed, in pieces (Gemini sends it whole, joined and parsed).
    arguments: tuple[str, ...] = ('{"city":', '"Paris"}')
    id: str = "call_emu1"  # OpenAI style; Anthropic gets "toolu_emu1" unless id starts with "toolu_"


@dataclass(slots=True)
class Script:
    """One scripted response. Every field has a sensible default: `Script()` says "Hello world!".

    Faults count *tokens* (text pieces or tool-argument pieces) already sent:
    - ``status``: answer with this HTTP status and the provider's error body (``retry_after`` adds the header).
    - ``error_after``: send a mid-stream error event after N tokens (``error_status`` picks its kind).
    - ``drop_after``: cut the connection after N tokens, chunked framing left unterminated.
    - ``stall_after``: stop sending after N tokens and hold the connection until the client leaves.
    - ``no_finish``: end the body cleanly after the tokens, without finish reason or usage.

    A request that demands structure (a schema, JSON mode, a forced tool call) is answered with it: see
    `answers.shape`. A request the real API would refuse gets its 400 whatever the script says.
    ``error_kind`` answers as the API answers that failure: ``context_length`` (a 400 with each API's own code and
    wording) or ``refusal`` (OpenAI's 400 ``invalid_prompt``, Anthropic's ``refusal`` stop, Gemini's blocked prompt).

    ``echo`` scripts how a continuation misbehaves: the response first repeats part of the partial answer the request
    carried (its last assistant turn, prefill or instruction form alike), then sends ``text``. ``echo_loose`` repeats
    it with the case, dashes and spacing changed the way a model retyping it might.
    """

    text: str | tuple[str, ...] = ("Hello", " world", "!")
    tool_call: ToolCallScript | None = None
    # The JSON value to answer a structured-output request with (default: one made from its schema).
    json: Any = None
    thinking: tuple[str, ...] = ()  # Anthropic thinking deltas / Gemini thought parts before the text
    finish: Finish = "stop"
    raw_finish: str | None = None  # the provider's own finish value, overriding `finish`
    stop_sequence: str | None = None  # Anthropic: which stop sequence ended it (with raw_finish "stop_sequence")
    input_tokens: int = 8
    output_tokens: int | None = None  # default: the number of tokens sent
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cache_creation_tokens: int = 0
    cache_creation_1h_tokens: int = 0  # of those, written for an hour (Anthropic's breakdown)
    status: int | None = None
    error_message: str | None = None
    retry_after: float | None = None
    error_after: int | None = None
    error_status: int = 500
    drop_after: int | None = None
    stall_after: int | None = None
    no_finish: bool = False
    delay: float = 0.0  # seconds before each token
    first_delay: float = 0.0  # seconds before the response headers
    byte_split: int | None = None  # write every event in HTTP chunks of at most this many bytes
    error_kind: ErrorKind | None = None
    echo: Echo | None = None
    echo_loose: bool = False

    def pieces(self) -> tuple[str, ...]:
        return split_words(self.text) if isinstance(self.text, str) else tuple(self.text)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Script:
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown script fields: {sorted(unknown)}")
        data = dict(raw)
        if isinstance(data.get("text"), list):
            data["text"] = tuple(data["text"])
        if "thinking" in data:
            data["thinking"] = tuple(data["thinking"])
        tc = data.get("tool_call")
        if isinstance(tc, dict):
            tc = dict(tc)
            if "arguments" in tc:
                args = tc["arguments"]
                tc["arguments"] = (args,) if isinstance(args, str) else tuple(args)
            data["tool_call"] = ToolCallScript(**tc)
        return cls(**data)


@dataclass(slots=True)
class RecordedRequest:
    """A request as the emulator saw it. Credentials are reduced to their last four characters."""

    provider: str  # "openai", "anthropic" or "gemini" ("unknown" for other paths)
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    model: str | None
    key_suffix: str | None
    connection: int  # which TCP connection carried it (shared pools reuse connections)
    started: float  # loop time
    script: Script | None = None
    rejected: str | None = None  # why validation refused it, as the 400 body says
    completed: bool = False  # the full scripted response was written
    disconnected: bool = False  # the client closed the connection before the response ended
    disconnected_at: float | None = None
    tokens_sent: int = 0
    events: list[bytes] = field(default_factory=list)  # the exact bytes of each event written


def partial_answer(provider: str, body: Any) -> str:
    """The partial answer a continuation request carries: the text of its last assistant turn."""
    if not isinstance(body, dict):
        return ""
    if provider == "gemini":
        turns = [c for c in body.get("contents", []) if c.get("role") == "model"]
        return "".join(p.get("text", "") for p in turns[-1]["parts"]) if turns else ""
    turns = [m for m in body.get("messages", []) if m.get("role") == "assistant"]
    if not turns:
        return ""
    content = turns[-1].get("content") or ""
    return content if isinstance(content, str) else "".join(b.get("text", "") for b in content)


def echo_of(partial: str, echo: Echo, loose: bool) -> str:
    """The part of `partial` a misbehaving continuation repeats, as it would retype it."""
    words = split_words(partial)
    if echo == "middle":
        part = "".join(words[len(words) // 2 :]).lstrip()
    elif echo == "last_sentence":
        cut = max(partial.rstrip().rfind(s) for s in (". ", "! ", "? ", "\n"))
        part = partial[cut + 1 :].lstrip() if cut >= 0 else partial
    else:
        part = partial
    if loose and part:
        part = part[0].swapcase() + part[1:].replace(" —", ",").replace(" ", "  ", 1)
    return part
