"""The app factory: everything is built here from settings, in dependency order, and hung on
`app.state.services`. What starts and stops is registered on one exit stack in the lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from gateway.budgets import StoreBudgetGuard
from gateway.bus import build_bus
from gateway.errors import install_error_handlers
from gateway.heap import settle
from gateway.metrics import MeteredLedger, Metrics
from gateway.openapi import document
from gateway.request_id import RequestIdMiddleware
from gateway.routes import budget as budget_routes
from gateway.routes import health, messages, metrics, models, openai_compat, pages, responses, streams, usage, ws
from gateway.routes import keys as key_routes
from gateway.routes import tickets as ticket_routes
from gateway.services import Services
from gateway.settings import Settings
from gateway.stores.base import Store
from gateway.tickets import MemoryTicketStore
from gateway.wiring import (
    build_auth,
    build_catalog,
    build_keys,
    build_providers,
    build_router,
    build_store,
    limits_of,
    memory_responses,
)
from sessions.ledger import LedgerWriter
from sessions.manager import SessionManager
from sessions.registry import StreamRegistry
from sessions.spool_slots import SpoolSlots, spool_name

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from gateway.cluster.wiring import Cluster
    from gateway.telemetry import Tracing

log = logging.getLogger("gateway")


def prepare_data_dir(settings: Settings) -> None:
    """The data dir holds the ledger's spool (and SQLite, and development keys): create it wherever it is, so a
    fresh instance can keep billed streams through a database outage from its first request."""
    try:
        settings.gateway_data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("cannot create the data dir", extra={"path": str(settings.gateway_data_dir), "error": str(exc)})


def metrics_of(streams: StreamRegistry, ledger: LedgerWriter) -> Metrics:
    return Metrics(
        {
            "gateway_active_streams": ("Streams generating now.", lambda: float(streams.live_count())),
            "gateway_ledger_backlog": ("Finished streams not yet written to the store.", lambda: float(ledger.backlog)),
        }
    )


def build_tracing(settings: Settings, tracer_provider: TracerProvider | None) -> Tracing | None:
    """Traces with the provider given, or over OTLP when configured; else nothing (and no OpenTelemetry import)."""
    if tracer_provider is None and not settings.otel_exporter_otlp_endpoint:
        return None
    from gateway.telemetry import Tracing, tracing_from

    return Tracing(tracer_provider) if tracer_provider is not None else tracing_from(settings)


def build_ledger(settings: Settings, store: Store, budgets: StoreBudgetGuard, worker: int | None) -> LedgerWriter:
    # The spool keeps billed streams through a database outage, and across a crash, until they are written. Each
    # process (each worker) holds a spool of its own and takes over those of processes that are gone.
    slots = SpoolSlots(settings.gateway_data_dir, spool_name(worker))
    return LedgerWriter(store, slots=slots, observers=[budgets])


def cluster_of(settings: Settings, redis_url: str | None, streams: StreamRegistry) -> Cluster | None:
    """What the instances share through Redis; None without Redis (the instance stands alone)."""
    if not redis_url:
        return None
    from gateway.cluster.wiring import build_cluster  # redis is imported only when configured

    return build_cluster(settings, redis_url, on_cancel=streams.cancel_local)


def build_services(
    settings: Settings, tracer_provider: TracerProvider | None = None, *, worker: int | None = None
) -> Services:
    prepare_data_dir(settings)
    store = build_store(settings)
    budgets = StoreBudgetGuard(store)
    ledger = build_ledger(settings, store, budgets, worker)
    streams = StreamRegistry()
    redis_url = settings.redis_url.get_secret_value() if settings.redis_url is not None else None
    cluster = cluster_of(settings, redis_url, streams)
    stats = metrics_of(streams, ledger)
    providers = build_providers(settings)
    catalog = build_catalog(settings)
    keys = build_keys(settings, store)
    spend = build_bus(redis_url, settings.gateway_redis_prefix)
    tracing = build_tracing(settings, tracer_provider)
    sessions = SessionManager(
        router=build_router(settings, providers, cluster.breaker if cluster is not None else None),
        catalog=catalog,
        keys=keys,
        ledger=MeteredLedger(ledger, stats),
        spend=spend,
        budget=budgets,
        limits=limits_of(settings),
        log_factory=cluster.log_for if cluster is not None else None,
        limiter=cluster.limiter if cluster is not None else None,
        remote=cluster.remote if cluster is not None else None,
        streams=streams,
        observer=tracing,
    )
    auth = build_auth(settings)
    return Services(
        settings=settings,
        auth=auth,
        catalog=catalog,
        providers=providers,
        keys=keys,
        store=store,
        ledger=ledger,
        sessions=sessions,
        spend=spend,
        budgets=budgets,
        metrics=stats,
        tickets=cluster.tickets if cluster is not None else MemoryTicketStore(),
        responses=cluster.responses if cluster is not None else memory_responses(settings),
        cluster=cluster,
        dev_token=auth.mint_dev_token() if settings.is_dev else None,
        tracing=tracing,
    )


async def run_services(services: Services, stack: AsyncExitStack) -> None:
    """Start what starts, each registered to stop in the reverse order: running streams are drained first (the
    ledger still takes them), the database last but for the clients the others do not need; the traces of it all
    are sent after everything else."""
    if services.tracing is not None:
        stack.push_async_callback(services.tracing.aclose)
    stack.push_async_callback(services.auth.aclose)
    stack.push_async_callback(services.tickets.aclose)
    stack.push_async_callback(_close_providers, services)
    await services.store.open()
    stack.push_async_callback(services.store.aclose)
    services.ledger.start()
    stack.push_async_callback(services.ledger.aclose)
    if services.cluster is not None:
        services.cluster.start()
        stack.push_async_callback(services.cluster.aclose)
    await services.spend.start()
    stack.push_async_callback(services.spend.aclose)
    stack.push_async_callback(services.sessions.drain, services.settings.gateway_drain_deadline_s)


async def _close_providers(services: Services) -> None:
    await asyncio.gather(*(p.aclose() for p in services.providers.values()))


def create_app(
    settings: Settings, *, tracer_provider: TracerProvider | None = None, worker: int | None = None
) -> FastAPI:
    """The gateway. `tracer_provider`: where stream traces go (else OTLP when configured, else nowhere); `worker`:
    this process's index among several workers (`WEB_CONCURRENCY`), None for a single process."""
    services = build_services(settings, tracer_provider, worker=worker)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            await run_services(services, stack)
            settle()  # the heap built so far out of the collector's way (gateway.heap)
            yield

    app = FastAPI(title="Agent gateway", version="0.1.0", lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.services = services
    install_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=[
                "authorization",
                "content-type",
                "last-event-id",
                "x-client-id",
                "x-gateway-fallbacks",
                *("x-api-key", "anthropic-version", "anthropic-beta"),  # the Anthropic SDKs' headers
            ],
            expose_headers=["x-stream-id", "x-request-id", "x-gateway-dropped-params"],
        )
    app.add_middleware(RequestIdMiddleware)  # outermost: also on what CORS answers itself
    for module in (health, metrics, models, streams, ws, usage, openai_compat, responses, messages, pages):
        app.include_router(module.router)
    app.include_router(ticket_routes.router)
    app.include_router(key_routes.router)
    app.include_router(budget_routes.router)
    document(app)
    return app
