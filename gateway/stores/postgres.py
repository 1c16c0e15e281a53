"""Postgres store over an asyncpg pool: any Postgres with supabase/migrations applied (Supabase included).

Writes and aggregates call the same SQL functions the Supabase store reaches through PostgREST, so both
produce identical rows. The pool connects lazily: a database that is down at start only delays the
ledger (which spools meanwhile), it does not stop the gateway.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import orjson

from gateway.stores import rows
from gateway.stores.base import (
    Budget,
    KeyInfo,
    Spend,
    StoredSecret,
    StoreError,
    StoreUnavailable,
    StreamRow,
    UnknownUser,
    UsageSummary,
)
from sessions.codec import record_to_dict
from sessions.records import StreamRecord

log = logging.getLogger("gateway.store")

# Errors that say "the database is not reachable or not serving right now": worth retrying later.
_TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.InterfaceError,
)


def _safe_target(dsn: str) -> str:
    """host:port/db for logs: never the password."""
    u = urlsplit(dsn)
    return f"{u.hostname or 'localhost'}:{u.port or 5432}{u.path or ''}"


def _uses_transaction_pooler(dsn: str) -> bool:
    # Supabase's pooler (and pgbouncer in transaction mode) cannot keep prepared statements.
    u = urlsplit(dsn)
    return u.port == 6543 or "pgbouncer=true" in (u.query or "")


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=lambda v: orjson.dumps(v).decode(), decoder=json.loads
    )


class PostgresStore:
    def __init__(
        self,
        dsn: str,
        *,
        max_size: int = 10,
        connect_timeout_s: float = 5.0,
        command_timeout_s: float = 15.0,
    ) -> None:
        self._dsn = dsn
        self._max_size = max_size
        self._connect_timeout = connect_timeout_s
        self._command_timeout = command_timeout_s
        self._pool: asyncpg.Pool | None = None
        self.target = _safe_target(dsn)

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(
            self._dsn,
            min_size=0,
            max_size=self._max_size,
            timeout=self._connect_timeout,
            command_timeout=self._command_timeout,
            init=_init_connection,
            statement_cache_size=0 if _uses_transaction_pooler(self._dsn) else 100,
            max_inactive_connection_lifetime=60,
        )
        if not await self.ping():
            log.warning("postgres is not reachable yet; the ledger will spool", extra={"target": self.target})

    async def aclose(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), 10)
            except TimeoutError:
                pool.terminate()

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        if self._pool is None:
            raise StoreUnavailable("store is not open")
        try:
            async with self._pool.acquire(timeout=self._connect_timeout) as conn:
                yield conn
        except (asyncpg.UndefinedFunctionError, asyncpg.UndefinedTableError) as exc:
            # The schema is not (yet) migrated: a deployment problem to wait out, not bad data.
            raise StoreUnavailable(f"postgres at {self.target} lacks the gateway schema: {exc}") from exc
        except asyncpg.ForeignKeyViolationError as exc:
            raise UnknownUser("no such user") from exc
        except asyncpg.exceptions.DataError as exc:  # a bad argument: subclass of InterfaceError, not transient
            raise StoreError(f"postgres refused the data: {exc}") from exc
        except _TRANSIENT as exc:
            raise StoreUnavailable(f"postgres at {self.target} unavailable: {type(exc).__name__}") from exc
        except asyncpg.PostgresError as exc:
            raise StoreError(f"postgres: {exc.__class__.__name__}: {exc}") from exc

    async def _call(self, sql: str, *args: Any) -> Any:
        async with self._conn() as conn:
            return await conn.fetchval(sql, *args)

    async def ping(self) -> bool:
        try:
            return bool(await self._call("select 1") == 1)
        except (StoreUnavailable, StoreError):
            return False

    # -- ledger ---------------------------------------------------------------------

    async def write_streams(self, records: Sequence[StreamRecord]) -> int:
        if not records:
            return 0
        payload = [record_to_dict(r) for r in records]
        return int(await self._call("select public.record_streams($1::jsonb)", payload))

    async def user_spend(self, user_id: str, day_start: datetime, month_start: datetime) -> Spend:
        d = await self._call("select public.user_spend($1::uuid, $2, $3)", user_id, day_start, month_start)
        return rows.spend(d)

    async def usage_summary(self, user_id: str | None, since: datetime, until: datetime) -> UsageSummary:
        d = await self._call("select public.usage_summary($1::uuid, $2, $3)", user_id, since, until)
        return rows.summary(user_id, since, until, d)

    async def recent_streams(self, user_id: str | None, limit: int = 50) -> list[StreamRow]:
        d = await self._call("select public.recent_streams($1::uuid, $2)", user_id, limit)
        return rows.streams(d)

    # -- keys ---------------------------------------------------------------------------

    _SECRETS = f"select {', '.join(rows.SECRET_COLUMNS)} from public.user_secrets"

    async def put_secret(self, user_id: str, provider: str, ciphertext: str, key_id: str, hint: str) -> KeyInfo:
        d = await self._call(
            "select public.put_user_secret($1::uuid, $2, $3, $4, $5)", user_id, provider, ciphertext, key_id, hint
        )
        return rows.key_info(d)

    async def get_secret(self, user_id: str, provider: str) -> StoredSecret | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(f"{self._SECRETS} where user_id = $1::uuid and provider = $2", user_id, provider)
        return None if row is None else rows.secret(dict(row))

    async def user_secrets(self, user_id: str) -> list[StoredSecret]:
        async with self._conn() as conn:
            found = await conn.fetch(f"{self._SECRETS} where user_id = $1::uuid order by provider", user_id)
        return [rows.secret(dict(r)) for r in found]

    async def list_keys(self, user_id: str) -> list[KeyInfo]:
        return [s.info for s in await self.user_secrets(user_id)]

    async def delete_secret(self, user_id: str, provider: str) -> bool:
        return bool(await self._call("select public.delete_user_secret($1::uuid, $2)", user_id, provider))

    async def all_secrets(self) -> list[StoredSecret]:
        async with self._conn() as conn:
            found = await conn.fetch(f"{self._SECRETS} order by user_id, provider")
        return [rows.secret(dict(r)) for r in found]

    async def replace_secret(
        self, user_id: str, provider: str, old_ciphertext: str, new_ciphertext: str, key_id: str
    ) -> bool:
        return bool(
            await self._call(
                "select public.replace_user_secret($1::uuid, $2, $3, $4, $5)",
                user_id,
                provider,
                old_ciphertext,
                new_ciphertext,
                key_id,
            )
        )

    # -- budgets ------------------------------------------------------------------------------

    async def budget(self, user_id: str) -> Budget | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(
                f"select {', '.join(rows.BUDGET_COLUMNS)} from public.user_budgets where user_id = $1::uuid", user_id
            )
        return None if row is None else rows.budget(dict(row))

    async def set_budget(self, user_id: str, daily_usd: Decimal | None, monthly_usd: Decimal | None) -> Budget:
        d = await self._call(
            "select public.set_user_budget($1::uuid, $2::numeric, $3::numeric)",
            user_id,
            None if rows.check_cap(daily_usd) is None else daily_usd,
            None if rows.check_cap(monthly_usd) is None else monthly_usd,
        )
        return rows.budget(d)
