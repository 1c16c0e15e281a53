"""`POST /v1/tickets`: trade a bearer token for a single-use ticket (for EventSource and WebSocket URLs)."""

from __future__ import annotations

import time

from fastapi import APIRouter
from starlette.responses import JSONResponse

from gateway.deps import CurrentCaller, ServicesDep

router = APIRouter(tags=["auth"])


@router.post("/v1/tickets", status_code=201)
async def issue_ticket(user: CurrentCaller, services: ServicesDep) -> JSONResponse:
    ttl = services.settings.gateway_ticket_ttl_s
    if user.expires_at is not None:
        # A ticket never outlives the token it was traded for.
        ttl = min(ttl, user.expires_at - time.time())
    ticket = await services.tickets.issue(user, ttl)
    return JSONResponse(
        {"ticket": ticket, "expires_in": round(ttl, 3)}, status_code=201, headers={"cache-control": "no-store"}
    )
