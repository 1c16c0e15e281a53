"""The app factory: everything is built here from settings and hung on `app.state.services`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from gateway.budgets import StoreBudgetGuard
from gateway.bus import build_bus
from gateway.crypto import key_ring_for
from gateway.errors import install_error_handlers
from gateway.keys import OperatorKeyDirectory, UserKeyDirectory
from gateway.metrics import MeteredLedger, Metrics
from gateway.routes import budget as budget_routes
from gateway.routes import health, metrics, models, openai_compat, pages, streams, usage, ws
from gateway.routes import keys as key_routes
from gateway.routes import tickets as ticket_routes
from gateway.services import Services
from gateway.settings import Settings
from gateway.upstreams import compatible_credentials
from gateway.wiring import build_auth, build_catalog, build_providers, build_store
from providers.backoff import Backoff
from providers.breaker import MemoryBreaker
from providers.router import Router
from sessions.ledger import LedgerWriter
from sessions.manager import Limits, SessionManager

if TYPE_CHECKING:
    from gateway.cluster.wiring import Cluster

log = logging.getLogger("gateway")


def build_services(settings: Settings) -> Services:
    catalog = build_catalog(settings)
    providers = build_providers(settings)
    store = build_store(settings)
    budgets = StoreBudgetGuard(store)
    # The spool keeps billed streams through a database outage, and across a crash, until they are written.
    ledger = LedgerWriter(store, spool_path=settings.gateway_data_dir / "ledger-spool.jsonl", observers=[budgets])
    operator = {
        "openai": settings.openai_api_key,
        "anthropic": settings.anthropic_api_key,
        "gemini": settings.gemini_api_key,
    }
    operator_keys = OperatorKeyDirectory(
        {p: k.get_secret_value() for p, k in operator.items() if k is not None},
        settings.gateway_allow_operator_keys,
        shared=compatible_credentials(settings),
    )
    keys = UserKeyDirectory(store, key_ring_for(settings), operator_keys)
    limits = Limits(
        max_concurrent_streams=settings.gateway_max_concurrent_streams,
        starts_per_minute=settings.gateway_starts_per_minute,
        resume_window_s=settings.gateway_resume_window_s,
        log_max_events=settings.gateway_stream_log_max_events,
        log_max_bytes=settings.gateway_stream_log_max_bytes,
    )
    redis_url = settings.redis_url.get_secret_value() if settings.redis_url is not None else None
    spend = build_bus(redis_url, settings.gateway_redis_prefix)
    cluster: Cluster | None = None
    if redis_url:
        from gateway.cluster.wiring import build_cluster  # redis is imported only when configured

        cluster = build_cluster(settings, redis_url)
    router = Router(
        providers,
        # One breaker for the whole process (with Redis, for every instance): every stream learns from every
        # other stream's failures.
        breaker=cluster.breaker
        if cluster is not None
        else MemoryBreaker(
            settings.gateway_breaker_min_requests,
            settings.gateway_breaker_failure_rate,
            settings.gateway_breaker_window_s,
            settings.gateway_breaker_cooldown_s,
        ),
        backoff=Backoff(max_retries=settings.gateway_retries),
        first_token_timeout_s=settings.gateway_first_token_timeout_s,
        inter_token_timeout_s=settings.gateway_inter_token_timeout_s,
        request_deadline_s=settings.gateway_request_deadline_s,
    )
    stats = Metrics()
    sessions = SessionManager(
        router=router,
        catalog=catalog,
        keys=keys,
        ledger=MeteredLedger(ledger, stats),
        spend=spend,
        budget=budgets,
        limits=limits,
        log_factory=cluster.log_for if cluster is not None else None,
        limiter=cluster.limiter if cluster is not None else None,
        remote=cluster.remote if cluster is not None else None,
    )
    if cluster is not None:
        cluster.control.on_cancel = sessions.cancel_local
    stats.gauge("gateway_active_streams", "Streams generating now.", lambda: float(sessions.live_count()))
    stats.gauge(
        "gateway_ledger_backlog", "Finished streams not yet written to the store.", lambda: float(ledger.backlog)
    )
    auth = build_auth(settings)
    services = Services(
        settings, auth, catalog, providers, keys, store, ledger, sessions, spend=spend, budgets=budgets, metrics=stats
    )
    if cluster is not None:
        services.cluster = cluster
        services.tickets = cluster.tickets
    return services


def create_app(settings: Settings) -> FastAPI:
    services = build_services(settings)
    if settings.is_dev:
        services.dev_token = services.auth.mint_dev_token()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await services.store.open()
        services.ledger.start()
        await services.spend.start()
        if services.cluster is not None:
            services.cluster.start()
        try:
            yield
        finally:
            await services.sessions.drain(settings.gateway_drain_deadline_s)
            await services.spend.aclose()
            if services.cluster is not None:
                await services.cluster.aclose()
            await services.ledger.aclose()
            await services.store.aclose()
            await asyncio.gather(*(p.aclose() for p in services.providers.values()))
            await services.tickets.aclose()
            await services.auth.aclose()

    app = FastAPI(title="Agent gateway", version="0.1.0", lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.services = services
    install_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["authorization", "content-type", "last-event-id", "x-client-id"],
            expose_headers=["x-stream-id"],
        )
    for module in (health, metrics, models, streams, ws, usage, openai_compat, pages):
        app.include_router(module.router)
    app.include_router(ticket_routes.router)
    app.include_router(key_routes.router)
    app.include_router(budget_routes.router)
    return app
