"""Everything `create_app` builds, in one typed bundle hung on `app.state.services`: built once, in dependency
order, never changed afterwards."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.auth import Authenticator
from gateway.budgets import StoreBudgetGuard
from gateway.bus import SpendBus
from gateway.keys import UserKeyDirectory
from gateway.metrics import Metrics
from gateway.response_store import ResponseStore
from gateway.settings import Settings
from gateway.stores.base import Store
from gateway.tickets import TicketStore
from providers.base import Provider
from providers.catalog import Catalog
from sessions.ledger import LedgerWriter
from sessions.manager import SessionManager

if TYPE_CHECKING:
    from gateway.cluster.wiring import Cluster
    from gateway.telemetry import Tracing


@dataclass(slots=True, frozen=True)
class Services:
    settings: Settings
    auth: Authenticator
    catalog: Catalog
    providers: dict[str, Provider]
    keys: UserKeyDirectory
    store: Store  # routes read usage from it; everything else takes its own role of it
    ledger: LedgerWriter
    sessions: SessionManager
    spend: SpendBus
    budgets: StoreBudgetGuard
    metrics: Metrics
    tickets: TicketStore  # in memory, or shared through Redis with several instances
    responses: ResponseStore  # kept Responses API responses: in memory, or in Redis with several instances
    cluster: Cluster | None  # with REDIS_URL: what this instance shares with the others
    dev_token: str | None  # development only: a token for the local user, printed at start
    tracing: Tracing | None  # with OTEL_EXPORTER_OTLP_ENDPOINT (or a tracer provider given to create_app)
