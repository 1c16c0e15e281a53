"""Your spend caps: `GET /v1/budget` and `PUT /v1/budget` (UTC day and UTC calendar month, in USD).

A stream does not start once a cap is reached (`budget_exceeded`, HTTP 402) and is stopped when its running
cost reaches what was left when it started (its partial output is billed).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from gateway.deps import STORE_FAILURES, CurrentUser, JsonBody, ServicesDep, budget_json, budget_status
from gateway.openapi import declares
from gateway.replies import Money

router = APIRouter(tags=["budget"])

MAX_CAP = Decimal(1_000_000_000)
CAP_PLACES = 10


class BudgetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_body_bytes: ClassVar[int] = 4096

    # Caps finer than this mean nothing next to what a stream costs, and would come back as long strings.
    daily_usd: Decimal | None = Field(None, ge=0, le=MAX_CAP, decimal_places=CAP_PLACES, allow_inf_nan=False)
    monthly_usd: Decimal | None = Field(None, ge=0, le=MAX_CAP, decimal_places=CAP_PLACES, allow_inf_nan=False)


class BudgetOut(BaseModel):
    """Caps (null: none) and what was spent this UTC day and month; `remaining_usd` is what the tighter cap leaves."""

    daily_usd: Money | None
    monthly_usd: Money | None
    today_usd: Money
    month_usd: Money
    remaining_usd: Money | None


@router.get("/v1/budget", response_model=BudgetOut)
@declares(raises=STORE_FAILURES)
async def get_budget(user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    return budget_json(await budget_status(services, user.user_id))


@router.put("/v1/budget", response_model=BudgetOut)
@declares(raises=STORE_FAILURES)
async def put_budget(user: CurrentUser, body: JsonBody[BudgetBody], services: ServicesDep) -> dict[str, Any]:
    await services.budgets.set_caps(user.user_id, body.daily_usd, body.monthly_usd)
    return budget_json(await budget_status(services, user.user_id))
