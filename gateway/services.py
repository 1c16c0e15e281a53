"""Everything `create_app` builds, in one typed bundle hung on `app.state.services`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.auth import Authenticator
from gateway.budgets import StoreBudgetGuard
from gateway.bus import SpendBus
from gateway.keys import UserKeyDirectory
from gateway.metrics import Metrics
from gateway.settings import Settings
from gateway.stores.base import Store
from gateway.tickets import MemoryTicketStore, TicketStore
from providers.base import Provider
from providers.catalog import Catalog
from sessions.ledger import LedgerWriter
from sessions.manager import SessionManager

if TYPE_CHECKING:
    from gateway.cluster.wiring import Cluster


@dataclass(slots=True)
class Services:
    settings: Settings
    auth: Authenticator
    catalog: Catalog
    providers: dict[str, Provider]
    keys: UserKeyDirectory
    store: Store
    ledger: LedgerWriter
    sessions: SessionManager
    spend: SpendBus
    budgets: StoreBudgetGuard
    dev_token: str | None = None
    metrics: Metrics = field(default_factory=Metrics)
    tickets: TicketStore = field(default_factory=MemoryTicketStore)  # a shared store replaces it for several instances
    extras: dict[str, object] = field(default_factory=dict)
    cluster: Cluster | None = None  # with REDIS_URL: what this instance shares with the others
