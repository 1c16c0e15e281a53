"""A provider that builds its adapter, and imports its SDK, the first time a stream needs it.

Each SDK costs tens of megabytes once imported; an instance that never streams through one never pays for it.
The import takes a good part of a second, so it runs on a worker thread: the event loop keeps serving the
streams already running (and health checks) meanwhile. Streams that arrive during the build wait for the one
build; once built, `stream` hands out the adapter's own iterator, with nothing in between.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from providers.base import ChatRequest, Credential, Provider
from providers.events import ProviderEvent


class LazyProvider:
    def __init__(self, name: str, build: Callable[[], Provider]) -> None:
        self.name = name
        self._build = build
        self._real: Provider | None = None
        self._building: asyncio.Future[Provider] | None = None

    @property
    def built(self) -> bool:
        return self._real is not None

    async def _provider(self) -> Provider:
        if self._real is not None:
            return self._real
        if self._building is None:
            self._building = asyncio.ensure_future(asyncio.to_thread(self._build))
        try:
            # Shielded: one waiter cancelled (its client left) does not cancel the build the others wait for.
            real = await asyncio.shield(self._building)
        except Exception:
            self._building = None  # the next stream tries again
            raise
        self._real = real
        return real

    def stream(self, request: ChatRequest, upstream_model: str, credential: Credential) -> AsyncIterator[ProviderEvent]:
        if self._real is not None:
            return self._real.stream(request, upstream_model, credential)
        return self._first_stream(request, upstream_model, credential)

    async def _first_stream(
        self, request: ChatRequest, upstream_model: str, credential: Credential
    ) -> AsyncIterator[ProviderEvent]:
        real = await self._provider()
        inner = real.stream(request, upstream_model, credential)
        try:
            async for ev in inner:
                yield ev
        finally:
            close = getattr(inner, "aclose", None)
            if close is not None:
                await close()

    async def aclose(self) -> None:
        building = self._building
        if self._real is None and building is not None and building.done() and not building.cancelled():
            self._real = building.result() if building.exception() is None else None
        if self._real is not None:
            await self._real.aclose()
