"""Your spend caps: `GET /v1/budget` and `PUT /v1/budget` (UTC day and UTC calendar month, in USD).

A stream does not start once a cap is reached (`budget_exceeded`, HTTP 402) and is stopped when its running
cost reaches what was left when it started (its partial output is billed).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import JSONResponse

from gateway.budgets import StoreBudgetGuard
from gateway.deps import CurrentUser, ServicesDep
from gateway.errors import error_response
from gateway.routes.keys import store_failure
from gateway.routes.streams import read_json_body
from gateway.stores.base import StoreError, StoreUnavailable

router = APIRouter(tags=["budget"])

MAX_CAP = Decimal(1_000_000_000)


class BudgetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    daily_usd: Decimal | None = Field(None, ge=0, le=MAX_CAP, allow_inf_nan=False)
    monthly_usd: Decimal | None = Field(None, ge=0, le=MAX_CAP, allow_inf_nan=False)


def _money(v: Decimal | None) -> str | None:
    return None if v is None else str(v)


async def budget_json(guard: StoreBudgetGuard, user_id: str) -> dict[str, Any] | JSONResponse:
    status = await guard.status(user_id)
    if status is None:
        return error_response(503, "store_unavailable", "spend cannot be read right now; try again shortly")
    b = status.budget
    return {
        "daily_usd": _money(b.daily_usd) if b else None,
        "monthly_usd": _money(b.monthly_usd) if b else None,
        "today_usd": str(status.today_usd),
        "month_usd": str(status.month_usd),
        "remaining_usd": _money(status.remaining_usd),
    }


@router.get("/v1/budget", response_model=None)
async def get_budget(user: CurrentUser, services: ServicesDep) -> dict[str, Any] | JSONResponse:
    assert services.budgets is not None
    return await budget_json(services.budgets, user.user_id)


@router.put("/v1/budget", response_model=None)
async def put_budget(request: Request, user: CurrentUser, services: ServicesDep) -> dict[str, Any] | JSONResponse:
    assert services.budgets is not None
    body = await read_json_body(request, 4096)
    if isinstance(body, JSONResponse):
        return body
    try:
        parsed = BudgetBody.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        code = "invalid_json" if first["type"] == "json_invalid" else "invalid_request"
        return error_response(422, code, f"{where}: {first['msg']}")
    try:
        await services.store.set_budget(user.user_id, parsed.daily_usd, parsed.monthly_usd)
    except (StoreError, StoreUnavailable) as exc:
        return store_failure(exc)
    services.budgets.forget(user.user_id)
    return await budget_json(services.budgets, user.user_id)
