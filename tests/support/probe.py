"""A provider of our own Provider Protocol that wraps another and records when each upstream stream ends.

Lets a test see, from the upstream's side, when the gateway stopped reading: the moment the generator was
closed or cancelled, and how.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from providers.base import ChatRequest, Credential, Provider
from providers.events import ProviderEvent, TextDelta


@dataclass
class Closed:
    at: float  # time.monotonic()
    how: str  # "finished", "CancelledError", "GeneratorExit" or an error's class name
    deltas: int


@dataclass
class ClosingProbe:
    inner: Provider
    name: str = "mock"
    closed: list[Closed] = field(default_factory=list)
    opened: int = 0

    async def stream(
        self, request: ChatRequest, upstream_model: str, credential: Credential
    ) -> AsyncIterator[ProviderEvent]:
        self.opened += 1
        how, deltas = "finished", 0
        try:
            async for ev in self.inner.stream(request, upstream_model, credential):
                deltas += isinstance(ev, TextDelta)
                yield ev
        except BaseException as exc:
            how = type(exc).__name__
            raise
        finally:
            self.closed.append(Closed(time.monotonic(), how, deltas))

    async def wait_closed(self, n: int = 1, timeout: float = 10.0) -> list[Closed]:
        async with asyncio.timeout(timeout):
            while len(self.closed) < n:
                await asyncio.sleep(0.005)
        return self.closed

    async def aclose(self) -> None:
        await self.inner.aclose()
