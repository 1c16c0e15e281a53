"""`segment_json`: the one JSON form of a `Segment` (the usage events, the ledger records, live spend and the
usage API all use it), and `money`, the one string form of an amount on the wire."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from providers.events import Usage
from providers.segments import Segment


def money(v: Decimal) -> str:
    """The one string form of an amount of money on the wire: plain decimal notation (`str` may say `1E-7`)."""
    return format(v, "f")


def segment_json(s: Segment) -> dict[str, Any]:
    """The one JSON form of a segment. Money is a string; times are milliseconds."""
    return {
        "segment": s.number,
        "model": s.model,
        "provider": s.provider,
        "status": s.status,
        "reason": s.reason,
        "input_tokens": s.usage.input_tokens,
        "output_tokens": s.usage.output_tokens,
        "cached_input_tokens": s.usage.cached_input_tokens,
        "cache_write_input_tokens": s.usage.cache_write_input_tokens,
        "reasoning_tokens": s.usage.reasoning_tokens,
        "cost_usd": money(s.cost_usd),
        "estimated": s.estimated,
        "ttft_ms": None if s.ttft_ms is None else round(s.ttft_ms, 2),
        "provider_code": s.provider_code,
        "provider_message": s.provider_message,
    }


def event_segment_json(s: Segment) -> dict[str, Any]:
    """A segment in the stream's own events, which also say how long the gateway took to fail over to it."""
    fo = s.failover_ms
    return {**segment_json(s), "failover_ms": None if fo is None else round(fo, 3)}


def segment_from_json(d: dict[str, Any]) -> Segment:
    """Back from `segment_json` (or `event_segment_json`); raises KeyError, TypeError or ValueError."""
    fo = d.get("failover_ms")
    return Segment(
        number=int(d["segment"]),
        model=str(d["model"]),
        provider=str(d["provider"]),
        status=d["status"],
        reason=d.get("reason"),
        usage=Usage(
            int(d["input_tokens"]),
            int(d["output_tokens"]),
            int(d.get("cached_input_tokens", 0)),
            int(d.get("reasoning_tokens", 0)),
            int(d.get("cache_write_input_tokens", 0)),
        ),
        estimated=bool(d["estimated"]),
        cost_usd=Decimal(d["cost_usd"]),
        ttft_ms=None if d.get("ttft_ms") is None else float(d["ttft_ms"]),
        provider_code=d.get("provider_code"),
        provider_message=d.get("provider_message"),
        # Only the difference of the two router timestamps is known on the wire.
        failover_from=None if fo is None else 0.0,
        sent_at=None if fo is None else float(fo) / 1000,
    )
