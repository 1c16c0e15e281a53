"""The store interface every backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sessions.records import StreamRecord


class StoreUnavailable(OSError):
    """The database cannot be reached right now (the ledger spools and retries)."""


class Store(Protocol):
    async def open(self) -> None: ...

    async def aclose(self) -> None: ...

    async def ping(self) -> bool: ...

    async def write_streams(self, records: Sequence[StreamRecord]) -> None: ...
