"""Spend caps: how much a user may still spend today and this month (UTC).

The guard keeps each user's caps and settled spend for a few seconds, so a burst of stream starts costs one
lookup, and the ledger keeps it current: every finished stream is added the moment the ledger takes it (not
when the database has it), so back-to-back streams see each other's cost even while the database is down.
The running cost of a live stream is checked in the session itself (no query per token).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from gateway.stores.base import Budget, BudgetStore, StoreError, StoreUnavailable
from sessions.records import StreamRecord

log = logging.getLogger("gateway.budgets")


def period_starts(now: datetime) -> tuple[datetime, datetime]:
    """Start of the UTC day and of the UTC month containing `now`."""
    now = now.astimezone(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return day, day.replace(day=1)


@dataclass(slots=True)
class _Entry:
    budget: Budget | None
    today_usd: Decimal
    month_usd: Decimal
    day_start: datetime
    month_start: datetime
    loaded_at: float
    # False when the user has no cap and the spend was not asked for (a stream start does not need it).
    spend_known: bool
    # Streams the ledger has taken but the database may not have yet: counted on top of what it reported.
    unsettled: dict[str, tuple[datetime, Decimal]] = field(default_factory=dict)
    # Their sums, kept as they come and go so a stream start does not walk the backlog.
    unsettled_today: Decimal = Decimal(0)
    unsettled_month: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        for started, cost in self.unsettled.values():
            self._count(started, cost)

    def _count(self, started: datetime, cost: Decimal) -> None:
        if started >= self.month_start:
            self.unsettled_month += cost
            if started >= self.day_start:
                self.unsettled_today += cost

    def add_unsettled(self, stream_id: str, started: datetime, cost: Decimal) -> None:
        old = self.unsettled.pop(stream_id, None)
        if old is not None:
            self._count(old[0], -old[1])
        self.unsettled[stream_id] = (started, cost)
        self._count(started, cost)

    def settle(self, stream_id: str) -> None:
        """The database has this stream now: its cost moves from unsettled into the settled sums."""
        item = self.unsettled.pop(stream_id, None)
        if item is None:
            return
        started, cost = item
        self._count(started, -cost)
        if started >= self.month_start:
            self.month_usd += cost
            if started >= self.day_start:
                self.today_usd += cost

    def spent(self) -> tuple[Decimal, Decimal]:
        return self.today_usd + self.unsettled_today, self.month_usd + self.unsettled_month


def _has_cap(budget: Budget | None) -> bool:
    return budget is not None and (budget.daily_usd is not None or budget.monthly_usd is not None)


@dataclass(slots=True, frozen=True)
class BudgetStatus:
    budget: Budget | None
    today_usd: Decimal
    month_usd: Decimal
    remaining_usd: Decimal | None


class StoreBudgetGuard:
    """`BudgetGuard` for the session layer and a ledger observer (`submitted` / `written`)."""

    def __init__(
        self,
        store: BudgetStore,
        *,
        ttl_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._ttl = ttl_s
        self._clock = clock
        self._now = now
        self._entries: dict[str, _Entry] = {}
        # One reload per user at a time: a burst of stream starts after the cache expired shares it.
        self._loading: dict[tuple[str, bool], asyncio.Future[_Entry | None]] = {}
        # Unsettled costs of users not in the cache yet (kept until written, then dropped).
        self._pending: dict[str, dict[str, tuple[datetime, Decimal]]] = {}

    async def remaining_usd(self, user_id: str) -> Decimal | None:
        entry = await self._entry(user_id, need_spend=False)
        if entry is None or not _has_cap(entry.budget):
            return None
        status = self._status(entry)
        return status.remaining_usd

    async def status(self, user_id: str) -> BudgetStatus | None:
        """None when the caps cannot be known right now (the database is down and nothing is cached)."""
        entry = await self._entry(user_id, need_spend=True)
        if entry is None:
            return None
        return self._status(entry)

    @staticmethod
    def _status(entry: _Entry) -> BudgetStatus:
        today, month = entry.spent()
        b = entry.budget
        remaining: Decimal | None = None
        if b is not None:
            left = [cap - spent for cap, spent in ((b.daily_usd, today), (b.monthly_usd, month)) if cap is not None]
            remaining = min(left) if left else None
        return BudgetStatus(b, today, month, remaining)

    async def _entry(self, user_id: str, *, need_spend: bool) -> _Entry | None:
        day_start, _ = period_starts(self._now())
        entry = self._entries.get(user_id)
        fresh = entry is not None and self._clock() - entry.loaded_at < self._ttl and entry.day_start == day_start
        if entry is not None and fresh and (entry.spend_known or not need_spend):
            return entry
        key = (user_id, need_spend)
        loading = self._loading.get(key)
        if loading is None:
            loading = self._loading[key] = asyncio.ensure_future(self._load(user_id, need_spend))
            loading.add_done_callback(lambda _f: self._loading.pop(key, None))
        # shield: one caller giving up (a client that went away) must not cancel the load the others wait on
        return await asyncio.shield(loading)

    async def _load(self, user_id: str, need_spend: bool) -> _Entry | None:
        day_start, month_start = period_starts(self._now())
        entry = self._entries.get(user_id)
        try:
            budget = await self._store.budget(user_id)
            # Without a cap a stream start needs no spend figures: skip the query that sums the month.
            with_spend = need_spend or _has_cap(budget)
            spend = await self._store.user_spend(user_id, day_start, month_start) if with_spend else None
        except (StoreUnavailable, StoreError) as exc:
            # Fail open on an outage: keep using what we knew (if it is still this day), else no cap.
            log.warning("budget lookup failed", extra={"user_id": user_id, "error": str(exc)})
            return entry if entry is not None and entry.day_start == day_start else None
        unsettled = self._pending.pop(user_id, {})
        if entry is not None:
            unsettled.update(entry.unsettled)
        today, month = (spend.today_usd, spend.month_usd) if spend is not None else (Decimal(0), Decimal(0))
        new = _Entry(budget, today, month, day_start, month_start, self._clock(), spend is not None, unsettled)
        self._entries[user_id] = new
        return new

    async def set_caps(self, user_id: str, daily_usd: Decimal | None, monthly_usd: Decimal | None) -> None:
        """Store new caps; the next check reloads. Raises the store's errors (UnknownUser, StoreUnavailable)."""
        await self._store.set_budget(user_id, daily_usd, monthly_usd)
        self.forget(user_id)

    def forget(self, user_id: str) -> None:
        """Caps changed: the next check reloads."""
        entry = self._entries.pop(user_id, None)
        if entry is not None and entry.unsettled:
            self._pending.setdefault(user_id, {}).update(entry.unsettled)

    # -- ledger observer ------------------------------------------------------------

    def submitted(self, record: StreamRecord) -> None:
        cost = record.cost_usd
        if cost <= 0:
            return
        item = (record.started_at.astimezone(UTC), cost)
        entry = self._entries.get(record.user_id)
        if entry is not None:
            entry.add_unsettled(record.stream_id, *item)
        else:
            self._pending.setdefault(record.user_id, {})[record.stream_id] = item

    def written(self, records: Sequence[StreamRecord]) -> None:
        """The database has these now: move them from unsettled into the settled sums (no reload needed)."""
        for r in records:
            entry = self._entries.get(r.user_id)
            if entry is not None:
                entry.settle(r.stream_id)
            pending = self._pending.get(r.user_id)
            if pending is not None:
                pending.pop(r.stream_id, None)
                if not pending:
                    del self._pending[r.user_id]
