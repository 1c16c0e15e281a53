"""Spend: `GET /v1/usage` (aggregates over a date range), `GET /v1/usage/streams` (the most recent streams
with their segments) and `GET /v1/usage/stream` (live spend as server-sent events).

A user sees only their own spend. A service-role caller may pass `user_id` (or `user_id=*` for everyone).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema
from starlette.types import Receive, Send

from gateway.auth import Principal
from gateway.bus import ALL
from gateway.deps import (
    STORE_FAILURES,
    CurrentCaller,
    HeaderOrTicketCaller,
    ServicesDep,
    budget_json,
    budget_status,
)
from gateway.faces.http import FollowResponse
from gateway.faces.spend import PREAMBLE, SPEND_EVENTS, SpendFrames, SpendSource
from gateway.faces.sse import SSEChannel
from gateway.openapi import declares
from gateway.replies import Money, StreamRowJson
from gateway.services import Services
from gateway.stores.base import StreamRow, UsageTotals
from sessions.errors import fail
from sessions.segment_json import money, segment_json

router = APIRouter(tags=["usage"])

MAX_RANGE_DAYS = 366
DEFAULT_RANGE_DAYS = 30
# Whose spend: someone else's only for the service role.
WHOSE = ("forbidden",)


class Totals(BaseModel):
    streams: int
    segments: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_input_tokens: int
    reasoning_tokens: int
    cost_usd: Money


class DayTotals(Totals):
    day: str = Field(json_schema_extra={"format": "date"})


class ModelTotals(Totals):
    model: str
    provider: str


class ProviderTotals(Totals):
    provider: str


class SpendBudget(BaseModel):
    daily_usd: Money | None
    monthly_usd: Money | None
    spent_today_usd: Money
    spent_month_usd: Money
    remaining_usd: Money | None


class UsageReport(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    user_id: str | None = Field(description="Whose spend; null: every user's (the service role).")
    start: str = Field(alias="from", json_schema_extra={"format": "date"})
    end: str = Field(alias="to", json_schema_extra={"format": "date"})
    totals: Totals
    by_day: list[DayTotals]
    by_model: list[ModelTotals]
    by_provider: list[ProviderTotals]
    budget: SpendBudget | None
    recent: list[StreamRowJson] | SkipJsonSchema[None] = Field(None, description="With `recent=N` only.")


class RecentStreams(BaseModel):
    user_id: str | None
    data: list[StreamRowJson]


def target_user(user: Principal, requested: str | None) -> str | None:
    """Whose spend the caller may read: their own; anyone's (None = all users) for the service role. The
    project's service-role key has no user of its own: without `user_id` it reads everyone's."""
    if requested is None and not user.has_user:
        return None
    if requested is None or requested == user.user_id:
        return user.user_id
    if not user.is_service:
        raise fail("forbidden", "only a service-role caller can read another user's usage")
    return None if requested in (ALL, "all") else requested


def totals_json(t: UsageTotals) -> dict[str, Any]:
    return {
        "streams": t.streams,
        "segments": t.segments,
        "input_tokens": t.input_tokens,
        "output_tokens": t.output_tokens,
        "cached_input_tokens": t.cached_input_tokens,
        "cache_write_input_tokens": t.cache_write_input_tokens,
        "reasoning_tokens": t.reasoning_tokens,
        "cost_usd": money(t.cost_usd),
    }


def _ts(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def stream_row_json(r: StreamRow) -> dict[str, Any]:
    return {
        "stream_id": r.stream_id,
        "user_id": r.user_id,
        "requested_model": r.requested_model,
        "status": r.status,
        "finish_reason": r.finish_reason,
        "error_code": r.error_code,
        "input_tokens": r.input_tokens,
        "output_tokens": r.output_tokens,
        "cached_input_tokens": r.cached_input_tokens,
        "cache_write_input_tokens": r.cache_write_input_tokens,
        "cost_usd": money(r.cost_usd),
        "estimated": r.estimated,
        "fallbacks": max(0, len(r.segments) - 1),
        "started_at": _ts(r.started_at),
        "ended_at": _ts(r.ended_at),
        "duration_ms": round(r.duration_ms, 1),
        "ttft_ms": None if r.ttft_ms is None else round(r.ttft_ms, 2),
        "segments": [segment_json(s.as_segment()) for s in r.segments],
    }


async def _budget(services: Services, who: str | None) -> dict[str, Any] | None:
    if who is None:
        return None
    return budget_json(await budget_status(services, who), spent_prefix="spent_", floor=True)


@router.get("/v1/usage", response_model=UsageReport, response_model_exclude_unset=True)
@declares(raises=(*WHOSE, *STORE_FAILURES))
async def usage(
    user: CurrentCaller,
    services: ServicesDep,
    start: Annotated[
        date | None, Query(alias="from", description=f"First UTC day (default: {DEFAULT_RANGE_DAYS} days before `to`).")
    ] = None,
    end: Annotated[
        date | None, Query(alias="to", description=f"Last UTC day, at most {MAX_RANGE_DAYS} days after `from`.")
    ] = None,
    user_id: str | None = None,
    recent: Annotated[int, Query(ge=0, le=200)] = 0,
) -> dict[str, Any]:
    """Spend by day, model and provider over `[from, to]` (UTC days, both included; the last 30 by default);
    with `recent=N`, also the N most recent streams, read from the same state as the totals."""
    who = target_user(user, user_id)
    now = datetime.now(UTC)
    end = end or now.date()
    start = start or end - timedelta(days=DEFAULT_RANGE_DAYS - 1)
    if start > end:
        raise fail("invalid_request", "'from' is after 'to'")
    if (end - start).days >= MAX_RANGE_DAYS:
        raise fail("invalid_request", f"a range covers at most {MAX_RANGE_DAYS} days")
    since = datetime.combine(start, time(), UTC)
    until = datetime.combine(end + timedelta(days=1), time(), UTC)
    # A dashboard that saw a stream finish on the live feed must find it here, in the totals and the list alike.
    async with services.ledger.settled():
        summary = await services.store.usage_summary(who, since, until)
        rows = await services.store.recent_streams(who, recent) if recent else None
    days = {d.day: d.totals for d in summary.by_day}
    by_day = []
    day = start
    while day <= end:  # every day of the range, zeros included, so charts need no gap filling
        by_day.append({"day": day.isoformat(), **totals_json(days.get(day, UsageTotals()))})
        day += timedelta(days=1)
    return {
        "user_id": who,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "totals": totals_json(summary.totals),
        "by_day": by_day,
        "by_model": [{"model": m.model, "provider": m.provider, **totals_json(m.totals)} for m in summary.by_model],
        "by_provider": [{"provider": p.provider, **totals_json(p.totals)} for p in summary.by_provider],
        "budget": await _budget(services, who),
        **({"recent": [stream_row_json(r) for r in rows]} if rows is not None else {}),
    }


@router.get("/v1/usage/streams", response_model=RecentStreams)
@declares(raises=(*WHOSE, *STORE_FAILURES))
async def recent_streams(
    user: CurrentCaller,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    user_id: str | None = None,
) -> dict[str, Any]:
    """The most recent finished streams, newest first, each with its segments (fallbacks visible)."""
    who = target_user(user, user_id)
    async with services.ledger.settled():
        rows = await services.store.recent_streams(who, limit)
    return {"user_id": who, "data": [stream_row_json(r) for r in rows]}


@router.get("/v1/usage/stream", response_model=None)
@declares(raises=WHOSE, events=SPEND_EVENTS)
async def usage_stream(user: HeaderOrTicketCaller, services: ServicesDep, user_id: str | None = None) -> FollowResponse:
    """Live spend: `spend.tick` while a stream runs (estimated), `spend.stream` when it ends (settled)."""
    who = target_user(user, user_id)
    ping_s = services.settings.gateway_sse_ping_s

    def channel(send: Send, receive: Receive) -> SSEChannel:
        return SSEChannel(send, receive, ping_s=ping_s, preamble=PREAMBLE)

    async def draining() -> None:
        # An endless response would hold up a graceful shutdown: end it once the server drains, and the client
        # reconnects (to another instance).
        while not services.sessions.draining:  # noqa: ASYNC110 (a flag the session manager owns)
            await asyncio.sleep(0.5)

    return FollowResponse(SpendSource(services.spend, who or ALL), SpendFrames(), channel, until=(draining,))
