"""Your spend caps: `GET /v1/budget` and `PUT /v1/budget` (UTC day and UTC calendar month, in USD).

A stream does not start once a cap is reached (`budget_exceeded`, HTTP 402) and is stopped when its running
cost reaches what was left when it started (its partial output is billed).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from gateway.deps import CurrentUser, JsonBody, ServicesDep, budget_json, budget_status

router = APIRouter(tags=["budget"])

MAX_CAP = Decimal(1_000_000_000)


class BudgetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_body_bytes: ClassVar[int] = 4096

    daily_usd: Decimal | None = Field(None, ge=0, le=MAX_CAP, allow_inf_nan=False)
    monthly_usd: Decimal | None = Field(None, ge=0, le=MAX_CAP, allow_inf_nan=False)


@router.get("/v1/budget")
async def get_budget(user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    return budget_json(await budget_status(services, user.user_id))


@router.put("/v1/budget")
async def put_budget(user: CurrentUser, body: JsonBody[BudgetBody], services: ServicesDep) -> dict[str, Any]:
    await services.budgets.set_caps(user.user_id, body.daily_usd, body.monthly_usd)
    return budget_json(await budget_status(services, user.user_id))
