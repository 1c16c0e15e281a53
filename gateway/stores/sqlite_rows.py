"""Between the SQLite store's rows and the store's values: timestamps as fixed-width text, money as decimal text,
a finished stream's rows, and the running sums of a usage summary."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from gateway.stores.base import UsageTotals
from providers.segments import Segment
from sessions.records import StreamRecord


def ts(value: datetime) -> str:
    """UTC, fixed width, so text order is time order."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def dt(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def dec(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def stream_values(r: StreamRecord) -> tuple[Any, ...]:
    """One `stream_usage` row, in `STREAM_COLS` order."""
    return (
        r.stream_id,
        r.user_id,
        r.client_id,
        r.requested_model,
        ",".join(r.models_tried),
        r.status,
        r.finish_reason,
        r.error_code,
        r.input_tokens,
        r.output_tokens,
        r.cached_input_tokens,
        r.reasoning_tokens,
        str(r.cost_usd),
        int(r.estimated),
        r.ttft_ms,
        r.duration_ms,
        ts(r.started_at),
        ts(r.ended_at),
        r.cache_write_input_tokens,
    )


def segment_values(r: StreamRecord, s: Segment) -> tuple[Any, ...]:
    """One `stream_segments` row, in `SEGMENT_COLS` order; a segment is dated by its stream's start."""
    return (
        r.stream_id,
        s.number,
        r.user_id,
        s.provider,
        s.model,
        s.status,
        s.reason,
        s.usage.input_tokens,
        s.usage.output_tokens,
        s.usage.cached_input_tokens,
        s.usage.reasoning_tokens,
        str(s.cost_usd),
        int(s.estimated),
        s.ttft_ms,
        s.duration_ms,
        ts(r.started_at),
        s.provider_code,
        s.provider_message,
        s.usage.cache_write_input_tokens,
    )


class Acc:
    """Running sums for one group of a usage summary."""

    __slots__ = ("cached", "cost", "inp", "out", "reasoning", "segments", "streams", "written")

    def __init__(self) -> None:
        self.streams: set[str] = set()
        self.segments = 0
        self.inp = self.out = self.cached = self.reasoning = self.written = 0
        self.cost = Decimal(0)

    def add(self, stream_id: str, row: Sequence[Any]) -> None:
        """One stream or segment: `(input, output, cached, reasoning, cost, cache written)` tokens and cost."""
        inp, out, cached, reasoning, cost, written = row
        self.streams.add(stream_id)
        self.segments += 1
        self.inp += inp
        self.out += out
        self.cached += cached
        self.reasoning += reasoning
        self.written += written
        self.cost += Decimal(cost)

    def totals(self) -> UsageTotals:
        return UsageTotals(
            len(self.streams),
            self.segments,
            self.inp,
            self.out,
            self.cached,
            self.reasoning,
            self.cost,
            self.written,
        )
