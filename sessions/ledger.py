"""The ledger writer: takes finished streams without blocking them and writes them in batches."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Protocol

from sessions.records import StreamRecord

log = logging.getLogger("gateway.ledger")


class UsageStore(Protocol):
    async def write_streams(self, records: Sequence[StreamRecord]) -> int:
        """Idempotent: writing the same stream twice must leave one row. Returns how many were new."""
        ...


class LedgerWriter:
    """Batches by size and time. `flush()` writes everything pending (used on shutdown)."""

    def __init__(self, store: UsageStore, *, batch_size: int = 100, interval_s: float = 0.25) -> None:
        self._store = store
        self._batch_size = batch_size
        self._interval = interval_s
        self._pending: list[StreamRecord] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.written = 0

    @property
    def backlog(self) -> int:
        return len(self._pending)

    def submit(self, record: StreamRecord) -> None:
        self._pending.append(record)
        if len(self._pending) >= self._batch_size:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="ledger writer")

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            while self._pending:
                batch = self._pending[: self._batch_size]
                try:
                    await self._store.write_streams(batch)
                except OSError as exc:
                    log.warning(
                        "ledger write failed; will retry", extra={"error": str(exc), "backlog": len(self._pending)}
                    )
                    return
                del self._pending[: len(batch)]
                self.written += len(batch)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.flush()
