"""The gateway's app served by granian instead of uvicorn, for `python -m bench.run --server granian`.

Only the bench uses this: it answers whether another server serves the per-token path better. It prints three
lines as `python -m gateway` does (granian binds the port, so no URL; then the development token), so the bench
reads both the same way. Graceful drain on SIGTERM is uvicorn-only (gateway.serving); here the lifespan
shutdown flushes the ledger.
"""

from __future__ import annotations

from fastapi import FastAPI

from gateway.app import create_app
from gateway.settings import load_settings


def app() -> FastAPI:
    settings = load_settings()
    application = create_app(settings)
    print("Gateway app built (served by granian)", flush=True)
    print("Development token (send as Authorization: Bearer <token>):", flush=True)
    print(application.state.services.dev_token, flush=True)
    return application
