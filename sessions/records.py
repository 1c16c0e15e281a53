"""What a finished stream leaves behind: one record per stream, one segment per attempt."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal

from providers.segments import Segment

StreamStatus = Literal["done", "error", "cancelled", "budget_exceeded"]


@dataclass(slots=True)
class StreamRecord:
    stream_id: str
    user_id: str
    client_id: str | None
    requested_model: str
    status: StreamStatus
    finish_reason: str | None
    error_code: str | None
    started_at: datetime
    ended_at: datetime
    segments: list[Segment] = field(default_factory=list)
    ttft_ms: float | None = None

    @property
    def models_tried(self) -> list[str]:
        return [s.model for s in self.segments]

    @property
    def input_tokens(self) -> int:
        return sum(s.usage.input_tokens for s in self.segments)

    @property
    def output_tokens(self) -> int:
        return sum(s.usage.output_tokens for s in self.segments)

    @property
    def cached_input_tokens(self) -> int:
        return sum(s.usage.cached_input_tokens for s in self.segments)

    @property
    def cache_write_input_tokens(self) -> int:
        return sum(s.usage.cache_write_input_tokens for s in self.segments)

    @property
    def reasoning_tokens(self) -> int:
        return sum(s.usage.reasoning_tokens for s in self.segments)

    @property
    def cost_usd(self) -> Decimal:
        return sum((s.cost_usd for s in self.segments), Decimal(0))

    @property
    def estimated(self) -> bool:
        return any(s.estimated for s in self.segments)

    @property
    def duration_ms(self) -> float:
        return (self.ended_at - self.started_at).total_seconds() * 1000
