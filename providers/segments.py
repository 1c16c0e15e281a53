"""What one attempt on one model leaves behind, and how the router gets a user's key.

A leaf module: the ledger records, the stores, the spend bus and the client events read segments without
importing the router.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal, Protocol

from providers.base import Credential
from providers.events import Usage

RequestForm = Literal["original", "prefill", "instruction"]


class KeyResolver(Protocol):
    async def credential(self, provider: str) -> Credential | None: ...


@dataclass(slots=True)
class Segment:
    """One attempt on one model: what it produced and what it cost."""

    number: int
    model: str
    provider: str
    status: Literal["ok", "failed", "cancelled"] = "ok"
    reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    estimated: bool = False
    cost_usd: Decimal = Decimal(0)
    chars: int = 0
    ttft_ms: float | None = None
    duration_ms: float = 0.0
    retry: int = 0  # 0 for the first attempt on this model in this stream, n for its n-th retry
    form: RequestForm = "original"  # how the request carried the partial answer
    # Monotonic timestamps (the router's clock): when this attempt's failure was detected, and for an
    # attempt that took over from another model, when the previous one's failure was detected and when
    # this request was handed to the provider. Their difference is the gateway's own failover time.
    failed_at: float | None = None
    failover_from: float | None = None
    sent_at: float | None = None
    # What the upstream itself said about the failure (its own code and message, keys removed, cut short).
    provider_code: str | None = None
    provider_message: str | None = None

    @property
    def failover_ms(self) -> float | None:
        if self.failover_from is None or self.sent_at is None:
            return None
        return (self.sent_at - self.failover_from) * 1000


@dataclass(slots=True, frozen=True)
class Attempt:
    """A model the router tried (`segment` set) or skipped (`segment` None), and why it did not answer."""

    model: str
    provider: str
    reason: str
    segment: int | None = None
    provider_code: str | None = None
    provider_message: str | None = None
