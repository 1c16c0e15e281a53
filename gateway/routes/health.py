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
        # Streams still work and are billed through the ledger's spool: stay in rotation rather than have
        # the platform restart every instance during a database outage.
        if services.ledger.can_spool:
            return JSONResponse({"status": "degraded", "store": "unreachable", "ledger": "spooling"})
        return JSONResponse({"status": "store_unreachable"}, status_code=503)
    return JSONResponse({"status": "ready"})
