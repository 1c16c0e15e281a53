"""A provider that builds its adapter, and imports its SDK, the first time a stream needs it.

Each SDK costs tens of megabytes once imported; an instance that never streams through one never pays for it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from providers.base import ChatRequest, Credential, Provider
from providers.events import ProviderEvent


class LazyProvider:
    def __init__(self, name: str, build: Callable[[], Provider]) -> None:
        self.name = name
        self._build = build
        self._real: Provider | None = None

    @property
    def built(self) -> bool:
        return self._real is not None

    def _provider(self) -> Provider:
        if self._real is None:
            self._real = self._build()
        return self._real

    def stream(self, request: ChatRequest, upstream_model: str, credential: Credential) -> AsyncIterator[ProviderEvent]:
        return self._provider().stream(request, upstream_model, credential)

    async def aclose(self) -> None:
        if self._real is not None:
            await self._real.aclose()
