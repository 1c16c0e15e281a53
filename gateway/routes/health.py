"""Liveness and readiness for Render's health check."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import JSONResponse

from gateway.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(services: ServicesDep) -> JSONResponse:
    if services.sessions.draining:
        return JSONResponse({"status": "draining"}, status_code=503)
    if not await services.store.ping():
        return JSONResponse({"status": "store_unreachable"}, status_code=503)
    return JSONResponse({"status": "ready"})
