"""`POST /v1/tickets`: trade a bearer token for a single-use ticket (for EventSource and WebSocket URLs)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import JSONResponse

from gateway.auth import AuthError, Principal
from gateway.deps import CurrentUser, ServicesDep, bearer_token
from gateway.services import Services

router = APIRouter(tags=["auth"])


async def redeem_ticket(services: Services, ticket: str) -> Principal:
    user = await services.tickets.redeem(ticket)
    if user.expires_at is not None and user.expires_at <= time.time():
        raise AuthError("token_expired", "the token behind this ticket has expired")
    return user


async def user_from_header_or_ticket(
    request: Request, services: ServicesDep, ticket: Annotated[str | None, Query(max_length=128)] = None
) -> Principal:
    """The bearer header when present (the ticket is then left unused), else the ticket."""
    token = bearer_token(request)
    if token is not None:
        return await services.auth.verify(token)
    if ticket:
        return await redeem_ticket(services, ticket)
    raise AuthError("missing_token", "send Authorization: Bearer <token> or ?ticket=<ticket>")


HeaderOrTicketUser = Annotated[Principal, Depends(user_from_header_or_ticket)]


@router.post("/v1/tickets", status_code=201)
async def issue_ticket(user: CurrentUser, services: ServicesDep) -> JSONResponse:
    ttl = services.settings.gateway_ticket_ttl_s
    if user.expires_at is not None:
        # A ticket never outlives the token it was traded for.
        ttl = min(ttl, user.expires_at - time.time())
    ticket = await services.tickets.issue(user, ttl)
    return JSONResponse(
        {"ticket": ticket, "expires_in": round(ttl, 3)}, status_code=201, headers={"cache-control": "no-store"}
    )
