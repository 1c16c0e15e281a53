"""A scripted implementation of our Provider protocol, for router tests: each request follows a `Step`."""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from providers import errors
from providers.base import ChatRequest, Credential
from providers.catalog import ModelSpec
from providers.events import Finish, FinishReason, ProviderEvent, TextDelta, ToolCallDelta, Usage
from providers.router import AllModelsFailed, Router, RouterEvent, SeamReset


@dataclass
class Step:
    """What one request gets: `text` pieces, then `tool` argument pieces, then `fail` or a clean finish."""

    text: Sequence[str] = ("Hello", " world")
    tool: Sequence[str] | None = None
    fail: errors.ProviderError | None = None  # raised after the pieces (at once if there are none)
    stall: bool = False  # after the pieces, wait forever (until closed)
    finish: FinishReason | None = "stop"  # None: end cleanly without a finish reason
    usage: Usage | None = field(default_factory=lambda: Usage(10, 5))
    delay: float = 0.0


@dataclass
class Seen:
    model: str
    request: ChatRequest
    credential: Credential
    closed: bool = False  # the iterator was closed before it finished on its own


class ScriptedProvider:
    def __init__(self, name: str, steps: dict[str, Iterable[Step]] | None = None) -> None:
        self.name = name
        self._steps: dict[str, deque[Step]] = defaultdict(deque)
        for model, seq in (steps or {}).items():
            self._steps[model].extend(seq)
        self.seen: list[Seen] = []

    def script(self, model: str, *steps: Step) -> None:
        self._steps[model].extend(steps)

    def requests(self, model: str | None = None) -> list[ChatRequest]:
        return [s.request for s in self.seen if model is None or s.model == model]

    async def stream(
        self, request: ChatRequest, upstream_model: str, credential: Credential
    ) -> AsyncIterator[ProviderEvent]:
        seen = Seen(upstream_model, request, credential)
        self.seen.append(seen)
        queue = self._steps[upstream_model]
        step = queue.popleft() if queue else Step()
        finished = False
        try:
            for piece in step.text:
                if step.delay:
                    await asyncio.sleep(step.delay)
                yield TextDelta(piece)
            for n, piece in enumerate(step.tool or ()):
                yield ToolCallDelta(0, "call_1" if n == 0 else None, "get_weather" if n == 0 else None, piece)
            if step.stall:
                await asyncio.sleep(3600)
            if step.fail is not None:
                finished = True
                raise step.fail
            if step.usage is not None:
                yield step.usage
            if step.finish is not None:
                yield Finish(step.finish)
            finished = True
        finally:
            if not finished:
                seen.closed = True

    async def aclose(self) -> None:
        return None


class Keys:
    """A key resolver with a key for every provider (or only the listed ones)."""

    def __init__(self, only: set[str] | None = None, source: str = "user") -> None:
        self.only = only
        self.source = source

    async def credential(self, provider: str) -> Credential | None:
        if self.only is not None and provider not in self.only:
            return None
        return Credential(f"key-{provider}", source=self.source)  # type: ignore[arg-type]


def spec(model: str, provider: str = "p1", *, prefill: bool = False, **kw: Any) -> ModelSpec:
    return ModelSpec(model, provider, model, supports_prefill=prefill, **kw)


@dataclass
class Outcome:
    events: list[RouterEvent]
    text: str
    error: AllModelsFailed | None

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


async def run(
    router: Router,
    chain: Sequence[ModelSpec],
    request: ChatRequest,
    keys: Any = None,
    policy: Any = "continue",
    on_refusal: Any = "error",
) -> Outcome:
    """Drive the router like a client does: its text restarts on a `restart` fallback and is cut back on a seam
    reset (the first `keep_chars` characters kept)."""
    from providers.router import FallbackStarted

    events: list[RouterEvent] = []
    parts: list[str] = []
    error = None
    try:
        async for ev in router.stream(request, chain, keys or Keys(), policy, on_refusal=on_refusal):
            events.append(ev)
            if isinstance(ev, TextDelta):
                parts.append(ev.text)
            elif isinstance(ev, FallbackStarted) and ev.mode == "restart":
                parts.clear()
            elif isinstance(ev, SeamReset):
                held = "".join(parts)
                assert len(held) == ev.keep_chars + ev.discard_chars, "a reset must account for all the text held"
                parts[:] = [held[: ev.keep_chars]]
    except AllModelsFailed as exc:
        error = exc
    return Outcome(events, "".join(parts), error)
