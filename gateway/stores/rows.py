"""JSON from the database functions (supabase/migrations) into the store's typed rows.

The Postgres and Supabase stores call the same SQL functions, so they share these readers.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from gateway.stores.base import (
    Budget,
    DayUsage,
    KeyInfo,
    ModelUsage,
    ProviderUsage,
    SegmentRow,
    Spend,
    StoredSecret,
    StoreError,
    StreamRow,
    UsageSummary,
    UsageTotals,
)

SECRET_COLUMNS = ("user_id", "provider", "ciphertext", "key_id", "hint", "created_at", "updated_at")
BUDGET_COLUMNS = ("user_id", "daily_usd", "monthly_usd", "updated_at")


def ts(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if isinstance(value, str):
        return datetime.fromisoformat(value).astimezone(UTC)
    raise StoreError(f"expected a timestamp, got {type(value).__name__}")


def money(value: Any) -> Decimal:
    if value is None:
        return Decimal(0)
    if isinstance(value, float):  # never expected: the SQL sends money as text
        raise StoreError("money arrived as a float")
    return Decimal(str(value))


def money_or_none(value: Any) -> Decimal | None:
    return None if value is None else money(value)


def _totals(d: Mapping[str, Any]) -> UsageTotals:
    return UsageTotals(
        streams=int(d.get("streams") or 0),
        segments=int(d.get("segments") or 0),
        input_tokens=int(d.get("input_tokens") or 0),
        output_tokens=int(d.get("output_tokens") or 0),
        cached_input_tokens=int(d.get("cached_input_tokens") or 0),
        reasoning_tokens=int(d.get("reasoning_tokens") or 0),
        cost_usd=money(d.get("cost_usd")),
        cache_write_input_tokens=int(d.get("cache_write_input_tokens") or 0),
    )


def summary(user_id: str | None, since: datetime, until: datetime, d: Mapping[str, Any]) -> UsageSummary:
    try:
        return UsageSummary(
            user_id=user_id,
            since=since,
            until=until,
            totals=_totals(d["totals"]),
            by_day=[DayUsage(date.fromisoformat(x["day"]), _totals(x)) for x in d["by_day"]],
            by_model=[ModelUsage(x["provider"], x["model"], _totals(x)) for x in d["by_model"]],
            by_provider=[ProviderUsage(x["provider"], _totals(x)) for x in d["by_provider"]],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"unexpected usage summary shape: {exc}") from None


def _float_or_none(v: Any) -> float | None:
    return None if v is None else float(v)


def streams(items: list[Mapping[str, Any]]) -> list[StreamRow]:
    try:
        return [
            StreamRow(
                stream_id=x["stream_id"],
                user_id=str(x["user_id"]),
                client_id=x.get("client_id"),
                requested_model=x["requested_model"],
                models_tried=list(x.get("models_tried") or []),
                status=x["status"],
                finish_reason=x.get("finish_reason"),
                error_code=x.get("error_code"),
                input_tokens=int(x["input_tokens"]),
                output_tokens=int(x["output_tokens"]),
                cached_input_tokens=int(x["cached_input_tokens"]),
                reasoning_tokens=int(x["reasoning_tokens"]),
                cost_usd=money(x["cost_usd"]),
                estimated=bool(x["estimated"]),
                ttft_ms=_float_or_none(x.get("ttft_ms")),
                duration_ms=float(x["duration_ms"]),
                started_at=ts(x["started_at"]),
                ended_at=ts(x["ended_at"]),
                segments=[
                    SegmentRow(
                        segment=int(g["segment"]),
                        provider=g["provider"],
                        model=g["model"],
                        status=g["status"],
                        reason=g.get("reason"),
                        input_tokens=int(g["input_tokens"]),
                        output_tokens=int(g["output_tokens"]),
                        cached_input_tokens=int(g["cached_input_tokens"]),
                        reasoning_tokens=int(g["reasoning_tokens"]),
                        cost_usd=money(g["cost_usd"]),
                        estimated=bool(g["estimated"]),
                        ttft_ms=_float_or_none(g.get("ttft_ms")),
                        duration_ms=float(g["duration_ms"]),
                        provider_code=g.get("provider_code"),
                        provider_message=g.get("provider_message"),
                        cache_write_input_tokens=int(g.get("cache_write_input_tokens") or 0),
                    )
                    for g in x.get("segments") or []
                ],
                cache_write_input_tokens=int(x.get("cache_write_input_tokens") or 0),
            )
            for x in items
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"unexpected stream row shape: {exc}") from None


def spend(d: Mapping[str, Any]) -> Spend:
    return Spend(money(d.get("today_usd")), money(d.get("month_usd")))


def key_info(d: Mapping[str, Any]) -> KeyInfo:
    return KeyInfo(d["provider"], d["hint"], d["key_id"], ts(d["created_at"]), ts(d["updated_at"]))


def secret(d: Mapping[str, Any]) -> StoredSecret:
    return StoredSecret(
        str(d["user_id"]),
        d["provider"],
        d["ciphertext"],
        d["key_id"],
        d["hint"],
        ts(d["created_at"]),
        ts(d["updated_at"]),
    )


def budget(d: Mapping[str, Any]) -> Budget:
    updated = d.get("updated_at")
    return Budget(
        str(d["user_id"]),
        money_or_none(d.get("daily_usd")),
        money_or_none(d.get("monthly_usd")),
        None if updated is None else ts(updated),
    )


def check_cap(value: Decimal | None) -> str | None:
    if value is None:
        return None
    if not value.is_finite() or value < 0:
        raise StoreError("a budget cap must be a non-negative amount")
    return str(value)
