"""Supabase store: supabase-py's async client over PostgREST with the service role key.

Writes and aggregates are RPC calls to the functions in supabase/migrations (the service role is the
only role allowed to execute them); key and budget lookups are plain table reads. One httpx pool is
shared by every request and owned (and closed) here. supabase-py's own GET retries are off: they sleep
for seconds, and availability is the ledger's business (it spools and retries).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
from postgrest.exceptions import APIError
from supabase import AsyncClient, AsyncClientOptions, acreate_client

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

# PostgREST's own "cannot reach / use the database" codes, HTTP statuses a gateway or proxy answers with,
# and SQLSTATE classes for connection trouble, lack of resources and operator intervention.
_UNAVAILABLE_CODES = {"PGRST000", "PGRST001", "PGRST002", "PGRST003", "500", "502", "503", "504", "520", "522", "524"}
# The schema is not (yet) migrated or PostgREST has not reloaded it: wait it out, it is not bad data.
_UNAVAILABLE_CODES |= {"PGRST202", "PGRST205", "42883", "42P01"}
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53", "57", "58")


def _classify(exc: APIError, what: str) -> Exception:
    code = exc.code or ""
    if code == "23503":
        return UnknownUser("no such user")
    if code in _UNAVAILABLE_CODES or (len(code) == 5 and code[:2] in _UNAVAILABLE_SQLSTATE_CLASSES):
        return StoreUnavailable(f"supabase unavailable during {what}: {code}")
    return StoreError(f"supabase refused {what}: {code} {exc.message or ''}".strip())


class SupabaseStore:
    def __init__(
        self,
        url: str,
        service_role_key: str,
        *,
        timeout_s: float = 10.0,
        connect_timeout_s: float = 5.0,
        max_connections: int = 20,
    ) -> None:
        self.url = url.rstrip("/")
        self._key = service_role_key
        self._timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
        self._limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._http: httpx.AsyncClient | None = None
        self._client: AsyncClient | None = None

    async def open(self) -> None:
        self._http = httpx.AsyncClient(timeout=self._timeout, limits=self._limits)
        self._client = await acreate_client(
            self.url,
            self._key,
            options=AsyncClientOptions(
                httpx_client=self._http,
                postgrest_client_retry=False,
                auto_refresh_token=False,
                persist_session=False,
            ),
        )
        if not await self.ping():
            log.warning("supabase is not reachable yet; the ledger will spool", extra={"target": self.url})

    async def aclose(self) -> None:
        self._client = None
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()

    @property
    def client(self) -> AsyncClient:
        if self._client is None:
            raise StoreUnavailable("store is not open")
        return self._client

    async def _rpc(self, fn: str, params: dict[str, Any]) -> Any:
        try:
            resp = await self.client.rpc(fn, params).execute()
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"supabase unreachable during {fn}: {type(exc).__name__}") from exc
        except APIError as exc:
            raise _classify(exc, fn) from exc
        return resp.data

    async def _select(
        self, table: str, columns: Sequence[str], filters: dict[str, str], order: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        query = self.client.table(table).select(",".join(columns))
        for column, value in filters.items():
            query = query.eq(column, value)
        for column in order:
            query = query.order(column)
        try:
            resp = await query.execute()
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"supabase unreachable reading {table}: {type(exc).__name__}") from exc
        except APIError as exc:
            raise _classify(exc, f"reading {table}") from exc
        if not isinstance(resp.data, list):
            raise StoreError(f"unexpected answer reading {table}")
        return [dict(r) for r in resp.data if isinstance(r, dict)]

    async def ping(self) -> bool:
        try:
            await self._select("user_budgets", ["user_id"], {"user_id": "00000000-0000-0000-0000-000000000000"})
        except (StoreUnavailable, StoreError):
            return False
        return True

    # -- ledger ---------------------------------------------------------------------

    async def write_streams(self, records: Sequence[StreamRecord]) -> int:
        if not records:
            return 0
        data = await self._rpc("record_streams", {"p_streams": [record_to_dict(r) for r in records]})
        return int(data)

    async def user_spend(self, user_id: str, day_start: datetime, month_start: datetime) -> Spend:
        data = await self._rpc(
            "user_spend",
            {"p_user_id": user_id, "p_day_start": day_start.isoformat(), "p_month_start": month_start.isoformat()},
        )
        return rows.spend(data)

    async def usage_summary(self, user_id: str | None, since: datetime, until: datetime) -> UsageSummary:
        data = await self._rpc(
            "usage_summary", {"p_user_id": user_id, "p_since": since.isoformat(), "p_until": until.isoformat()}
        )
        return rows.summary(user_id, since, until, data)

    async def recent_streams(self, user_id: str | None, limit: int = 50) -> list[StreamRow]:
        return rows.streams(await self._rpc("recent_streams", {"p_user_id": user_id, "p_limit": limit}))

    # -- keys ---------------------------------------------------------------------------

    async def put_secret(self, user_id: str, provider: str, ciphertext: str, key_id: str, hint: str) -> KeyInfo:
        data = await self._rpc(
            "put_user_secret",
            {
                "p_user_id": user_id,
                "p_provider": provider,
                "p_ciphertext": ciphertext,
                "p_key_id": key_id,
                "p_hint": hint,
            },
        )
        return rows.key_info(data)

    async def get_secret(self, user_id: str, provider: str) -> StoredSecret | None:
        found = await self._select("user_secrets", rows.SECRET_COLUMNS, {"user_id": user_id, "provider": provider})
        return rows.secret(found[0]) if found else None

    async def user_secrets(self, user_id: str) -> list[StoredSecret]:
        found = await self._select("user_secrets", rows.SECRET_COLUMNS, {"user_id": user_id}, order=["provider"])
        return [rows.secret(r) for r in found]

    async def list_keys(self, user_id: str) -> list[KeyInfo]:
        return [s.info for s in await self.user_secrets(user_id)]

    async def delete_secret(self, user_id: str, provider: str) -> bool:
        return bool(await self._rpc("delete_user_secret", {"p_user_id": user_id, "p_provider": provider}))

    async def all_secrets(self) -> list[StoredSecret]:
        found = await self._select("user_secrets", rows.SECRET_COLUMNS, {}, order=["user_id", "provider"])
        return [rows.secret(r) for r in found]

    async def replace_secret(
        self, user_id: str, provider: str, old_ciphertext: str, new_ciphertext: str, key_id: str
    ) -> bool:
        return bool(
            await self._rpc(
                "replace_user_secret",
                {
                    "p_user_id": user_id,
                    "p_provider": provider,
                    "p_old_ciphertext": old_ciphertext,
                    "p_new_ciphertext": new_ciphertext,
                    "p_key_id": key_id,
                },
            )
        )

    # -- budgets ------------------------------------------------------------------------------

    async def budget(self, user_id: str) -> Budget | None:
        # PostgREST sends numeric as JSON numbers (floats in Python): ask for text instead.
        columns = ["user_id", "daily_usd::text", "monthly_usd::text", "updated_at"]
        found = await self._select("user_budgets", columns, {"user_id": user_id})
        return rows.budget(found[0]) if found else None

    async def set_budget(self, user_id: str, daily_usd: Decimal | None, monthly_usd: Decimal | None) -> Budget:
        data = await self._rpc(
            "set_user_budget",
            {
                "p_user_id": user_id,
                "p_daily_usd": rows.check_cap(daily_usd),
                "p_monthly_usd": rows.check_cap(monthly_usd),
            },
        )
        return rows.budget(data)
