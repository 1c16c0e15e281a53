"""Fresh Postgres databases for tests: created per run, made Supabase-like, migrated, dropped at the end."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

ROOT = Path(__file__).resolve().parents[2]
SHIM = ROOT / "tests" / "sql" / "supabase_shim.sql"
MIGRATIONS = sorted((ROOT / "supabase" / "migrations").glob("*.sql"))
# A superuser connection to a database the tests may create others from (GATEWAY_TEST_PG_DSN overrides it).
ADMIN_DSN = os.environ.get("GATEWAY_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def address() -> tuple[str, int]:
    """Host and port of the test server, for a proxy in front of it."""
    parts = urlsplit(ADMIN_DSN)
    return parts.hostname or "127.0.0.1", parts.port or 5432


def dsn_for(database: str, admin_dsn: str = ADMIN_DSN) -> str:
    base, _, _ = admin_dsn.rpartition("/")
    return f"{base}/{database}"


async def reachable(admin_dsn: str = ADMIN_DSN) -> bool:
    try:
        conn = await asyncpg.connect(admin_dsn, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


async def apply_sql(dsn: str, files: list[Path]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for f in files:
            await conn.execute(f.read_text())
    finally:
        await conn.close()


@asynccontextmanager
async def fresh_database(prefix: str = "gw_test", *, migrate: bool = True) -> AsyncIterator[str]:
    """A new database with the Supabase shim and every migration applied; yields its DSN."""
    name = f"{prefix}_{secrets.token_hex(5)}"
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'create database "{name}"')
    finally:
        await admin.close()
    dsn = dsn_for(name)
    try:
        if migrate:
            await apply_sql(dsn, [SHIM, *MIGRATIONS])
        yield dsn
    finally:
        admin = await asyncpg.connect(ADMIN_DSN)
        try:
            await admin.execute(f'drop database if exists "{name}" with (force)')
        finally:
            await admin.close()
