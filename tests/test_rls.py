# ruff: noqa: S608  (table and view names come from the constant lists below)
"""Row level security and grants, on the real migrations over a Supabase-like Postgres.

Checked two ways: in SQL under each role (as PostgREST would run it), and over HTTP with supabase-py
against the PostgREST-compatible endpoint using real user tokens.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from postgrest.exceptions import APIError
from supabase import AsyncClientOptions, acreate_client

from gateway.stores.postgres import PostgresStore
from tests.conftest import service_unavailable
from tests.postgrest.server import PostgrestEmulator, mint_key
from tests.support import pg
from tests.support.records import new_user, record
from tests.support.server import serve

SECRET = "rls-test-jwt-secret-0123456789abcdef0123"


@dataclass
class World:
    dsn: str
    url: str
    alice: str
    bob: str
    alice_stream: str
    bob_stream: str


@pytest.fixture(scope="module")
async def world() -> AsyncIterator[World]:
    if not await pg.reachable():
        service_unavailable("PostgreSQL")
    async with pg.fresh_database("gw_rls") as dsn:
        alice, bob = new_user(), new_user()
        admin = await asyncpg.connect(dsn)
        await admin.execute("insert into auth.users (id) values ($1::uuid), ($2::uuid)", alice, bob)
        await admin.close()
        store = PostgresStore(dsn)
        await store.open()
        t = datetime(2024, 5, 1, 12, tzinfo=UTC)
        ra, rb = record("st_alice_1", alice, t), record("st_bob_1", bob, t)
        await store.write_streams([ra, rb])
        await store.put_secret(alice, "openai", "k1:alice-ciphertext", "k1", "sk-…aaaa")
        await store.put_secret(bob, "openai", "k1:bob-ciphertext", "k1", "sk-…bbbb")
        await store.set_budget(bob, None, None)
        await store.aclose()
        emulator = PostgrestEmulator(dsn, SECRET)
        await emulator.start()
        try:
            async with serve(emulator.app) as url:
                yield World(dsn, url, alice, bob, ra.stream_id, rb.stream_id)
        finally:
            await emulator.stop()


async def as_role(dsn: str, role: str, sub: str | None, sql: str, *args: Any) -> list[asyncpg.Record]:
    """Run one statement the way PostgREST does: role switched, claims set, in a transaction rolled back."""
    conn = await asyncpg.connect(dsn, user="authenticator")
    try:
        tr = conn.transaction()
        await tr.start()
        try:
            await conn.execute(f"set local role {role}")
            claims = {"role": role, **({"sub": sub} if sub else {})}
            await conn.execute("select set_config('request.jwt.claims', $1, true)", json.dumps(claims))
            return list(await conn.fetch(sql, *args))
        finally:
            await tr.rollback()
    finally:
        await conn.close()


TABLES = ["stream_usage", "stream_segments", "user_secrets", "user_budgets"]
VIEWS = ["usage_daily", "usage_daily_by_model", "usage_daily_by_provider"]


async def test_every_public_table_has_rls_enabled(world: World) -> None:
    conn = await asyncpg.connect(world.dsn)
    try:
        rows = await conn.fetch(
            "select c.relname, c.relrowsecurity from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname = 'public' and c.relkind = 'r'"
        )
    finally:
        await conn.close()
    assert {r[0] for r in rows} >= set(TABLES)
    assert all(r[1] for r in rows), [r[0] for r in rows if not r[1]]


async def test_no_api_role_but_the_service_role_may_execute_a_public_function(world: World) -> None:
    conn = await asyncpg.connect(world.dsn)
    try:
        rows = await conn.fetch(
            "select p.oid::regprocedure::text as fn, "
            "has_function_privilege('anon', p.oid, 'execute') as anon, "
            "has_function_privilege('authenticated', p.oid, 'execute') as authed, "
            "has_function_privilege('service_role', p.oid, 'execute') as service, "
            "p.prosecdef as definer, p.proconfig as config "
            "from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = 'public'"
        )
    finally:
        await conn.close()
    assert len(rows) >= 8
    for r in rows:
        assert not r["anon"] and not r["authed"], f"{r['fn']} is callable by an end user"
        assert r["service"], f"{r['fn']} is not callable by the gateway"
        if r["definer"]:
            assert r["config"] and any(c.startswith("search_path=") for c in r["config"]), r["fn"]


@pytest.mark.parametrize("table", TABLES)
async def test_a_user_reads_only_their_own_rows_even_when_filtering_for_someone_else(world: World, table: str) -> None:
    cols = "user_id, provider, hint" if table == "user_secrets" else "user_id"
    mine = await as_role(world.dsn, "authenticated", world.alice, f"select {cols} from public.{table}")
    expected = {world.alice} if table != "user_budgets" else set()
    assert {str(r["user_id"]) for r in mine} == expected
    forged = await as_role(
        world.dsn,
        "authenticated",
        world.alice,
        f"select {cols} from public.{table} where user_id = $1::uuid",
        world.bob,
    )
    assert forged == []
    bob = await as_role(world.dsn, "authenticated", world.bob, f"select {cols} from public.{table}")
    assert {str(r["user_id"]) for r in bob} == {world.bob}


@pytest.mark.parametrize("view", VIEWS)
async def test_spend_views_apply_the_callers_rls(world: World, view: str) -> None:
    rows = await as_role(world.dsn, "authenticated", world.alice, f"select user_id, cost_usd from public.{view}")
    assert rows and {str(r["user_id"]) for r in rows} == {world.alice}
    everyone = await as_role(world.dsn, "service_role", None, f"select distinct user_id from public.{view}")
    assert {str(r["user_id"]) for r in everyone} == {world.alice, world.bob}


async def test_nobody_reads_ciphertext_through_the_authenticated_role(world: World) -> None:
    for sql in (
        "select ciphertext from public.user_secrets",
        "select * from public.user_secrets",
        "select key_id from public.user_secrets where user_id = auth.uid()",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await as_role(world.dsn, "authenticated", world.alice, sql)


@pytest.mark.parametrize("table", [*TABLES, *VIEWS])
async def test_anon_sees_nothing(world: World, table: str) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await as_role(world.dsn, "anon", None, f"select user_id from public.{table}")


WRITES = [
    "insert into public.stream_usage (stream_id, user_id, requested_model, status, started_at, ended_at) "
    "values ('st_forged', auth.uid(), 'm', 'done', now(), now())",
    "update public.stream_usage set cost_usd = 0",
    "delete from public.stream_usage",
    "update public.stream_segments set cost_usd = 0",
    "insert into public.user_secrets (user_id, provider, ciphertext, key_id, hint) "
    "values (auth.uid(), 'gemini', 'x', 'k1', 'h')",
    "update public.user_secrets set hint = 'x'",
    "delete from public.user_secrets",
    "insert into public.user_budgets (user_id, daily_usd) values (auth.uid(), 1000000)",
    "update public.user_budgets set daily_usd = null",
    "select public.record_streams('[]'::jsonb)",
    "select public.put_user_secret(auth.uid(), 'gemini', 'x', 'k1', 'h')",
    "select public.set_user_budget(auth.uid(), null, null)",
    "select public.usage_summary(null, now() - interval '1 year', now())",
    "select public.recent_streams(null, 10)",
    "select public.user_spend(auth.uid(), now(), now())",
]


@pytest.mark.parametrize("role", ["anon", "authenticated"])
@pytest.mark.parametrize("sql", WRITES, ids=[w.split("(")[0][:40] for w in WRITES])
async def test_end_users_cannot_write_or_call_the_gateways_functions(world: World, role: str, sql: str) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await as_role(world.dsn, role, world.alice if role == "authenticated" else None, sql)


async def test_even_the_service_role_writes_only_through_the_functions(world: World) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await as_role(world.dsn, "service_role", None, WRITES[0].replace("auth.uid()", f"'{world.alice}'"))
    rows = await as_role(
        world.dsn,
        "service_role",
        None,
        "select public.put_user_secret($1::uuid, 'gemini', 'k1:x', 'k1', 'h')",
        world.alice,
    )
    assert json.loads(rows[0][0])["provider"] == "gemini"


# -- over HTTP, with supabase-py and real tokens -------------------------------------------------


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


async def user_client(world: World, http: httpx.AsyncClient, sub: str | None, key: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {mint_key(SECRET, 'authenticated', sub)}"} if sub else {}
    options = AsyncClientOptions(headers=headers, httpx_client=http)
    return await acreate_client(world.url, key or mint_key(SECRET, "anon"), options=options)


async def expect_refused(call: Callable[[], Awaitable[Any]]) -> APIError:
    with pytest.raises(APIError) as info:
        await call()
    assert info.value.code == "42501", info.value
    return info.value


async def test_over_http_a_user_sees_only_their_usage_and_key_hints(world: World, http: httpx.AsyncClient) -> None:
    alice = await user_client(world, http, world.alice)
    rows = (await alice.table("stream_usage").select("stream_id,user_id").execute()).data
    assert [r["stream_id"] for r in rows] == [world.alice_stream]
    forged = (await alice.table("stream_usage").select("stream_id").eq("user_id", world.bob).execute()).data
    assert forged == []
    by_id = (await alice.table("stream_usage").select("stream_id").eq("stream_id", world.bob_stream).execute()).data
    assert by_id == []
    hints = (await alice.table("user_secrets").select("provider,hint").execute()).data
    assert hints == [{"provider": "openai", "hint": "sk-…aaaa"}]
    await expect_refused(lambda: alice.table("user_secrets").select("ciphertext").execute())
    await expect_refused(lambda: alice.table("user_secrets").select("*").eq("user_id", world.bob).execute())


async def test_over_http_a_user_cannot_write_usage_or_call_rpc(world: World, http: httpx.AsyncClient) -> None:
    alice = await user_client(world, http, world.alice)
    row = {
        "stream_id": "st_http_forged",
        "user_id": world.alice,
        "requested_model": "m",
        "status": "done",
        "started_at": "2024-05-01T00:00:00Z",
        "ended_at": "2024-05-01T00:00:01Z",
    }
    await expect_refused(lambda: alice.table("stream_usage").insert(row).execute())
    await expect_refused(
        lambda: alice.table("stream_usage").update({"cost_usd": 0}).eq("user_id", world.alice).execute()
    )
    await expect_refused(lambda: alice.table("stream_usage").delete().eq("user_id", world.alice).execute())
    await expect_refused(lambda: alice.rpc("record_streams", {"p_streams": [row]}).execute())
    await expect_refused(
        lambda: alice.rpc(
            "usage_summary", {"p_user_id": None, "p_since": "2000-01-01T00:00:00Z", "p_until": "2100-01-01T00:00:00Z"}
        ).execute()
    )


async def test_over_http_anon_sees_nothing(world: World, http: httpx.AsyncClient) -> None:
    anon = await user_client(world, http, None)
    for table in [*TABLES, *VIEWS]:
        err = await expect_refused(lambda t=table: anon.table(t).select("user_id").execute())  # type: ignore[misc]
        assert "permission denied" in (err.message or "")
    await expect_refused(lambda: anon.rpc("recent_streams", {"p_user_id": None, "p_limit": 5}).execute())


async def test_over_http_a_forged_token_is_refused(world: World, http: httpx.AsyncClient) -> None:
    forged = mint_key("not-the-project-secret-0123456789abcdef", "service_role")
    client = await user_client(world, http, None, forged)
    with pytest.raises(APIError) as info:
        await client.table("stream_usage").select("stream_id").execute()
    assert info.value.code == "PGRST301"
