"""`POST /v1/tickets`: trade a bearer token for a single-use ticket (for EventSource and WebSocket URLs)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from gateway.deps import CurrentCaller, ServicesDep

router = APIRouter(tags=["auth"])


class Ticket(BaseModel):
    ticket: str = Field(description="Use once, as `?ticket=`, on the WebSocket and SSE URLs.")
    expires_in: float = Field(description="Seconds it stays valid (never past the token it was traded for).")


@router.post("/v1/tickets", status_code=201, response_model=Ticket)
async def issue_ticket(user: CurrentCaller, services: ServicesDep, response: Response) -> Ticket:
    ttl = services.settings.gateway_ticket_ttl_s
    if user.expires_at is not None:
        # A ticket never outlives the token it was traded for.
        ttl = min(ttl, user.expires_at - time.time())
    ticket = await services.tickets.issue(user, ttl)
    response.headers["cache-control"] = "no-store"
    return Ticket(ticket=ticket, expires_in=round(ttl, 3))
