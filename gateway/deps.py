"""FastAPI dependencies: the services bundle and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from gateway.auth import AuthError, Principal
from gateway.services import Services


def services_of(conn: HTTPConnection) -> Services:
    services: Services = conn.app.state.services
    return services


# Dependencies are `async def` even when they do not await: FastAPI runs a plain `def` dependency on a worker
# thread, a hop that costs every request more than the dependency itself.
async def get_services(conn: HTTPConnection) -> Services:
    return services_of(conn)


ServicesDep = Annotated[Services, Depends(get_services)]


def bearer_token(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


async def current_user(request: Request, services: ServicesDep) -> Principal:
    token = bearer_token(request)
    if token is None:
        raise AuthError("missing_token", "send Authorization: Bearer <token>")
    return await services.auth.verify(token)


CurrentUser = Annotated[Principal, Depends(current_user)]
