"""Liveness and readiness for Render's health check."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import SkipJsonSchema

from gateway.deps import ServicesDep

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    """`ready`; `degraded` (200) while the database is unreachable but billed streams spool; else 503."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["ready", "degraded", "draining", "store_unreachable"]
    store: Literal["unreachable"] | SkipJsonSchema[None] = None
    ledger: Literal["spooling"] | SkipJsonSchema[None] = None


@router.get("/healthz", response_model=Health)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    response_model_exclude_none=True,
    responses={503: {"model": Readiness, "description": "Draining, or the database is unreachable and nothing spools"}},
)
async def readyz(services: ServicesDep, response: Response) -> Readiness:
    if services.sessions.draining:
        response.status_code = 503
        return Readiness(status="draining")
    if not await services.store.ping():
        # Streams still work and are billed through the ledger's spool: stay in rotation rather than have
        # the platform restart every instance during a database outage.
        if services.ledger.can_spool:
            return Readiness(status="degraded", store="unreachable", ledger="spooling")
        response.status_code = 503
        return Readiness(status="store_unreachable")
    return Readiness(status="ready")
