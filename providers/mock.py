"""The built-in `mock` provider: deterministic text at a configurable pace, with scripted faults.

Used for demos, tests and benchmarks. The answer is a fixed word sequence seeded by the prompt,
so a continuation (prefill or "continue" instruction) resumes the same sequence and a fallback
from `mock` to `mock-backup` reads as one coherent answer.

Directives in the last user message tune one request, e.g. ``[[mock tokens=40 delay_ms=5
fail_after=10 fail=server_error only=mock]]``. `only` limits the fault to one upstream model.
``on_continue=repeat`` makes a continuation start the answer again from its first word (the seam cuts the
repeat); ``on_continue=rewrite`` makes it restart and then write different words (the seam tells the client).
"""

from __future__ import annotations

import asyncio
import re
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from providers import errors
from providers.base import ChatRequest, Credential
from providers.capabilities import MOCK, refusals
from providers.events import Finish, ProviderEvent, TextDelta, ToolCallDelta, Usage


# Three vocabularies of short words (about four letters, which cost estimates in tests assume), no word in two of
# them. Word `i` of an answer comes from the vocabulary a square-free sequence picks (Thue-Morse differences: no
# stretch of it ever repeats right after itself), so no run of words is ever followed by itself and a continuation
# of the answer never looks like a repeat of the text before it.
def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_VOCABS = (
    _words(
        "the gateway streams every token from model to you while it keeps count of cost and falls back when one fails "
        "so your answer continues where stopped without losing a word"
    ),
    _words("bits flow over sockets or pipes as small parts each priced by size then kept safe in logs till done"),
    _words("many hosts share redis thus any node can resume lost feeds at once with no gap"),
)
_WORDS = tuple(w for vocab in _VOCABS for w in vocab)


def _thue_morse(n: int) -> int:
    return bin(n).count("1") & 1


_DIRECTIVE = re.compile(r"\[\[mock([^\]]*)\]\]")

_FAULTS: dict[str, type[errors.ProviderError]] = {
    "server_error": errors.ServerError,
    "rate_limited": errors.RateLimited,
    "overloaded": errors.Overloaded,
    "connection_lost": errors.ConnectionLost,
    "timeout": errors.UpstreamTimeout,
    "auth_failed": errors.AuthFailed,
    "bad_request": errors.BadRequest,
    "content_filtered": errors.ContentRefused,
    "content_refused": errors.ContentRefused,  # the older name of the same fault
    "context_length_exceeded": errors.ContextLengthExceeded,
    "truncated": errors.Truncated,
}


@dataclass(slots=True)
class MockScript:
    tokens: int = 32
    delay_ms: float = 0.0
    fail_after: int | None = None
    fail: str = "server_error"  # a key of _FAULTS, or "stall"
    only: str | None = None
    tool: str | None = None  # stream a tool call to this function instead of text
    on_continue: str | None = None  # "repeat" or "rewrite": how a continuation misbehaves


def parse_script(request: ChatRequest, default_tokens: int, default_delay_ms: float) -> MockScript:
    script = MockScript(tokens=default_tokens, delay_ms=default_delay_ms)
    for msg in reversed(request.messages):
        if msg.role != "user":
            continue
        m = _DIRECTIVE.search(msg.text())
        if m:
            for item in m.group(1).split():
                key, _, value = item.partition("=")
                if key in ("tokens", "fail_after"):
                    setattr(script, key, int(value))
                elif key == "delay_ms":
                    script.delay_ms = float(value)
                elif key in ("fail", "only", "tool", "on_continue"):
                    setattr(script, key, value)
        break
    return script


def _seed(request: ChatRequest) -> int:
    first_user = next((m.text() for m in request.messages if m.role == "user"), "")
    return zlib.crc32(_DIRECTIVE.sub("", first_user).encode()) % len(_WORDS)


def mock_word(seed: int, i: int) -> str:
    vocab = _VOCABS[_thue_morse(i + 1) - _thue_morse(i) + 1]
    return vocab[(seed + i * 7) % len(vocab)]


def _already_written(request: ChatRequest) -> int:
    """Words of the answer already present as an assistant prefill or a continue turn.

    An earlier answer in a multi-turn chat is neither: only a trailing assistant message (prefill), or one
    followed by a user turn asking to continue, counts.
    """
    msgs = request.messages
    if not msgs:
        return 0
    target = msgs[-1]
    if target.role == "user" and len(msgs) >= 2 and "continue" in target.text().lower():
        target = msgs[-2]
    if target.role != "assistant" or target.tool_calls:
        return 0
    return len(target.text().split())


class MockProvider:
    name = "mock"

    def __init__(self, default_tokens: int = 32, default_delay_ms: float = 0.0) -> None:
        self._default_tokens = default_tokens
        self._default_delay_ms = default_delay_ms

    async def stream(
        self, request: ChatRequest, upstream_model: str, credential: Credential
    ) -> AsyncIterator[ProviderEvent]:
        refused = refusals(MOCK, request)
        if refused:
            # Fixed text cannot take a schema, a forced call or logprobs: say so rather than ignore it.
            names = ", ".join(u.field for u in refused)
            raise errors.BadRequest(f"the mock model cannot honour {names}", provider=self.name, model=upstream_model)
        script = parse_script(request, self._default_tokens, self._default_delay_ms)
        fails_here = script.fail_after is not None and script.only in (None, upstream_model)
        prompt_chars = sum(len(m.text()) for m in request.messages)
        usage = Usage(input_tokens=max(1, prompt_chars // 4))
        delay = script.delay_ms / 1000.0
        if fails_here and script.fail_after == 0 and script.fail != "stall":
            raise _FAULTS[script.fail](f"mock fault {script.fail}", provider=self.name, model=upstream_model)
        if script.tool:
            async for ev in self._tool_call(script, usage, delay):
                yield ev
            return
        seed = _seed(request)
        start = _already_written(request)
        first, diverge = start, None
        if start and script.on_continue in ("repeat", "rewrite"):
            # Starts over from the first word; a rewrite keeps all but the last word written, then goes its own way.
            first = 0
            diverge = max(2, start - 1) if script.on_continue == "rewrite" else None
        # A continuation starts with a space so the joined text reads as one answer.
        lead = " " if first else ""
        limit = script.tokens if request.max_tokens is None else min(script.tokens, request.max_tokens)
        for i in range(first, max(first, limit)):
            if fails_here and usage.output_tokens == script.fail_after:
                if script.fail == "stall":
                    await asyncio.sleep(3600)
                raise _FAULTS[script.fail](f"mock fault {script.fail}", provider=self.name, model=upstream_model)
            if delay:
                await asyncio.sleep(delay)
            word = mock_word(seed if diverge is None or i < diverge else seed + 13, i)
            yield TextDelta(lead + word if i == first else " " + word)
            usage.output_tokens += 1
        yield Usage(usage.input_tokens, usage.output_tokens)
        yield Finish("length" if request.max_tokens is not None and request.max_tokens < script.tokens else "stop")

    async def _tool_call(self, script: MockScript, usage: Usage, delay: float) -> AsyncIterator[ProviderEvent]:
        pieces = ['{"city":', ' "Paris"', "}"]
        for n, piece in enumerate(pieces):
            if delay:
                await asyncio.sleep(delay)
            yield ToolCallDelta(0, "call_mock1" if n == 0 else None, script.tool if n == 0 else None, piece)
            usage.output_tokens += 1
        yield Usage(usage.input_tokens, usage.output_tokens)
        yield Finish("tool_calls")

    async def aclose(self) -> None:
        return None
