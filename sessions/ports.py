"""The small interfaces the session layer needs from the outside; `gateway` wires implementations in."""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol

from providers.segments import KeyResolver
from sessions.records import StreamRecord


class LedgerSink(Protocol):
    """Takes finished streams. Must not block the stream: batching and retries are the sink's job."""

    def submit(self, record: StreamRecord) -> None: ...


class SpendPublisher(Protocol):
    """Live spend: a stream's running cost while it streams, and the settled record at the end."""

    def running(self, user_id: str, stream_id: str, model: str, cost_usd: Decimal, output_tokens: int) -> None: ...

    def finished(self, record: StreamRecord) -> None: ...


class KeyDirectory(Protocol):
    """Which provider keys a user can stream with (their own, or the operator's where allowed)."""

    async def resolver_for(self, user_id: str) -> KeyResolver: ...


class BudgetGuard(Protocol):
    """Spend caps. `remaining_usd` is None when the user has no cap."""

    async def remaining_usd(self, user_id: str) -> Decimal | None: ...


class NullLedger:
    def __init__(self) -> None:
        self.records: list[StreamRecord] = []

    def submit(self, record: StreamRecord) -> None:
        self.records.append(record)


class NullSpend:
    def running(self, user_id: str, stream_id: str, model: str, cost_usd: Decimal, output_tokens: int) -> None:
        return None

    def finished(self, record: StreamRecord) -> None:
        return None


class NoBudget:
    async def remaining_usd(self, user_id: str) -> Decimal | None:
        return None
