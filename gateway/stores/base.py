"""The store interface every backend implements, and the typed rows it returns.

Times are timezone-aware UTC datetimes; money is Decimal USD; days are UTC calendar days.
Usage ranges are half-open: `since <= started_at < until` (a stream counts on the day it started).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Literal, Protocol, cast

from providers.events import Usage
from providers.segments import Segment
from sessions.ledger import UsageStore

SegmentStatus = Literal["ok", "failed", "cancelled"]


class StoreError(Exception):
    """The store refused an operation (bad data, a constraint): retrying the same call will not help."""


class StoreUnavailable(OSError):
    """The database cannot be reached right now (the ledger spools and retries)."""


class UnknownUser(StoreError):
    """The user id does not exist in the user directory (Supabase `auth.users`)."""


# -- provider keys (BYOK) -------------------------------------------------------


@dataclass(slots=True, frozen=True)
class KeyInfo:
    """What a user may see about a stored key: never the key, only a masked hint."""

    provider: str
    hint: str
    key_id: str
    created_at: datetime
    updated_at: datetime


@dataclass(slots=True, frozen=True)
class StoredSecret:
    """An encrypted key as stored. `ciphertext` carries its key id prefix (see gateway.crypto)."""

    user_id: str
    provider: str
    ciphertext: str
    key_id: str
    hint: str
    created_at: datetime
    updated_at: datetime

    def __repr__(self) -> str:  # ciphertext is not secret, but keep it out of logs anyway
        return f"StoredSecret(user_id={self.user_id!r}, provider={self.provider!r}, key_id={self.key_id!r})"

    @property
    def info(self) -> KeyInfo:
        return KeyInfo(self.provider, self.hint, self.key_id, self.created_at, self.updated_at)


# -- budgets ----------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class Budget:
    """Spend caps in USD; None means no cap of that kind."""

    user_id: str
    daily_usd: Decimal | None
    monthly_usd: Decimal | None
    updated_at: datetime | None = None


@dataclass(slots=True, frozen=True)
class Spend:
    """A user's settled spend since the start of the UTC day and of the UTC month."""

    today_usd: Decimal
    month_usd: Decimal


# -- usage aggregates -----------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class UsageTotals:
    """Sums over a set of streams (`streams`) and their attempts (`segments`)."""

    streams: int = 0
    segments: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    cache_write_input_tokens: int = 0


@dataclass(slots=True, frozen=True)
class DayUsage:
    day: date
    totals: UsageTotals


@dataclass(slots=True, frozen=True)
class ModelUsage:
    provider: str
    model: str
    totals: UsageTotals


@dataclass(slots=True, frozen=True)
class ProviderUsage:
    provider: str
    totals: UsageTotals


@dataclass(slots=True, frozen=True)
class UsageSummary:
    """Spend for one user (or all users when `user_id` is None) over `[since, until)`.

    `by_day` is ordered by day; `by_model` and `by_provider` by cost, highest first. Per-model and
    per-provider figures come from segments, so a stream that fell back counts towards each model it used
    (its `streams` there is the number of distinct streams that touched it).
    """

    user_id: str | None
    since: datetime
    until: datetime
    totals: UsageTotals
    by_day: list[DayUsage] = field(default_factory=list)
    by_model: list[ModelUsage] = field(default_factory=list)
    by_provider: list[ProviderUsage] = field(default_factory=list)


@dataclass(slots=True, frozen=True)
class SegmentRow:
    segment: int
    provider: str
    model: str
    status: str
    reason: str | None
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    reasoning_tokens: int
    cost_usd: Decimal
    estimated: bool
    ttft_ms: float | None
    duration_ms: float
    provider_code: str | None = None  # what the provider said about a failed attempt
    provider_message: str | None = None
    cache_write_input_tokens: int = 0

    def as_segment(self) -> Segment:
        """The segment this row recorded (what the store keeps of it), for the one segment encoding."""
        usage = Usage(
            self.input_tokens,
            self.output_tokens,
            self.cached_input_tokens,
            self.reasoning_tokens,
            self.cache_write_input_tokens,
        )
        return Segment(
            number=self.segment,
            model=self.model,
            provider=self.provider,
            status=cast(SegmentStatus, self.status),
            reason=self.reason,
            usage=usage,
            estimated=self.estimated,
            cost_usd=self.cost_usd,
            ttft_ms=self.ttft_ms,
            duration_ms=self.duration_ms,
        )


@dataclass(slots=True, frozen=True)
class StreamRow:
    stream_id: str
    user_id: str
    client_id: str | None
    requested_model: str
    models_tried: list[str]
    status: str
    finish_reason: str | None
    error_code: str | None
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    reasoning_tokens: int
    cost_usd: Decimal
    estimated: bool
    ttft_ms: float | None
    duration_ms: float
    started_at: datetime
    ended_at: datetime
    segments: list[SegmentRow] = field(default_factory=list)
    cache_write_input_tokens: int = 0


# -- the roles its callers use --------------------------------------------------------------------------------
# One backend class implements them all (`Store`); each caller is handed only the role it needs. The ledger's
# role, `write_streams`, is the session layer's `UsageStore`.


class UsageReader(Protocol):
    """Read side of the ledger, for GET /v1/usage and the dashboard."""

    async def usage_summary(self, user_id: str | None, since: datetime, until: datetime) -> UsageSummary: ...

    async def recent_streams(self, user_id: str | None, limit: int = 50) -> list[StreamRow]:
        """Newest first (by `started_at`), each with its segments in order."""
        ...


class SecretStore(Protocol):
    """Users' provider keys, encrypted (BYOK)."""

    async def put_secret(self, user_id: str, provider: str, ciphertext: str, key_id: str, hint: str) -> KeyInfo:
        """Store or replace. Raises UnknownUser when the user does not exist."""
        ...

    async def get_secret(self, user_id: str, provider: str) -> StoredSecret | None: ...

    async def user_secrets(self, user_id: str) -> list[StoredSecret]: ...

    async def list_keys(self, user_id: str) -> list[KeyInfo]:
        """Ordered by provider."""
        ...

    async def delete_secret(self, user_id: str, provider: str) -> bool: ...

    async def all_secrets(self) -> list[StoredSecret]:
        """Every stored secret (for re-encryption under a new key)."""
        ...

    async def replace_secret(
        self, user_id: str, provider: str, old_ciphertext: str, new_ciphertext: str, key_id: str
    ) -> bool:
        """Swap the ciphertext only if it is still `old_ciphertext` (a concurrent PUT wins)."""
        ...


class BudgetStore(Protocol):
    """Spend caps and the settled spend they are held against."""

    async def budget(self, user_id: str) -> Budget | None: ...

    async def set_budget(self, user_id: str, daily_usd: Decimal | None, monthly_usd: Decimal | None) -> Budget:
        """Raises UnknownUser when the user does not exist."""
        ...

    async def user_spend(self, user_id: str, day_start: datetime, month_start: datetime) -> Spend: ...


class StoreLifecycle(Protocol):
    async def open(self) -> None:
        """Connect. Must not fail when the database is merely down (the ledger spools meanwhile)."""
        ...

    async def aclose(self) -> None: ...

    async def ping(self) -> bool: ...


class Store(StoreLifecycle, UsageStore, UsageReader, SecretStore, BudgetStore, Protocol):
    """Everything a backend implements."""
