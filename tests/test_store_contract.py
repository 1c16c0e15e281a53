"""One contract, three stores: SQLite on a temp file, Postgres on a fresh database, and Supabase through
the real supabase-py client against the PostgREST-compatible test endpoint on that same kind of database.

Expected values are computed here from the records written, so every store must agree with them exactly
(money to the last digit, timestamps to the microsecond).
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from gateway.stores import sqlite_schema as schema
from gateway.stores.base import Store, StoreError, UnknownUser
from gateway.stores.postgres import PostgresStore
from gateway.stores.sqlite import SQLiteStore
from gateway.stores.supabase import SupabaseStore
from tests.conftest import service_unavailable
from tests.postgrest.server import PostgrestEmulator, mint_key
from tests.support import pg
from tests.support.clients import collect_sse, user_msg
from tests.support.records import new_user, record
from tests.support.server import serve

JWT_SECRET = "contract-test-jwt-secret-0123456789abcdef"


@dataclass
class Backend:
    name: str
    store: Store
    dsn: str | None = None
    emulator: PostgrestEmulator | None = None
    url: str | None = None

    async def add_user(self, user_id: str) -> None:
        """Supabase-backed stores keep keys and budgets only for users in auth.users."""
        if self.dsn is None:
            return
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute("insert into auth.users (id) values ($1::uuid) on conflict do nothing", user_id)
        finally:
            await conn.close()


@pytest.fixture(scope="module", params=["sqlite", "postgres", "supabase"])
async def backend(request: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Backend]:
    kind = request.param
    if kind == "sqlite":
        store = SQLiteStore(tmp_path_factory.mktemp("sqlite") / "gateway.sqlite3")
        await store.open()
        try:
            yield Backend(kind, store)
        finally:
            await store.aclose()
        return
    if not await pg.reachable():
        service_unavailable("PostgreSQL")
    async with pg.fresh_database(f"gw_contract_{kind}") as dsn:
        if kind == "postgres":
            pstore = PostgresStore(dsn)
            await pstore.open()
            try:
                yield Backend(kind, pstore, dsn)
            finally:
                await pstore.aclose()
            return
        emulator = PostgrestEmulator(dsn, JWT_SECRET)
        await emulator.start()
        try:
            async with serve(emulator.app) as url:
                sstore = SupabaseStore(url, mint_key(JWT_SECRET, "service_role"))
                await sstore.open()
                try:
                    yield Backend(kind, sstore, dsn, emulator, url)
                finally:
                    await sstore.aclose()
        finally:
            await emulator.stop()


def sid() -> str:
    return "st_" + secrets.token_urlsafe(9)


def window(year: int) -> datetime:
    """Each test writes into its own year, so everyone's totals (user_id None) see only that test's rows."""
    return datetime(year, 3, 14, 10, 0, 0, 123456, tzinfo=UTC)


async def test_ping(backend: Backend) -> None:
    assert await backend.store.ping()


async def test_writes_are_idempotent_on_stream_id(backend: Backend) -> None:
    store, user, t = backend.store, new_user(), window(2001)
    a, b, c = (record(sid(), user, t + timedelta(minutes=i)) for i in range(3))
    assert await store.write_streams([a, b]) == 2
    assert await store.write_streams([a, b, c]) == 1
    assert await store.write_streams([c, c]) == 0
    rows = await store.recent_streams(user, 10)
    assert sorted(r.stream_id for r in rows) == sorted([a.stream_id, b.stream_id, c.stream_id])
    assert all(len(r.segments) == 1 for r in rows)
    summary = await store.usage_summary(None, t, t + timedelta(days=1))
    assert summary.totals.streams == 3
    assert summary.totals.segments == 3


async def test_a_stream_and_its_segments_round_trip(backend: Backend) -> None:
    store, user, t = backend.store, new_user(), window(2002)
    rec = record(
        sid(),
        user,
        t,
        [("openai", "gpt-x", 1200, 40, "0.000012345678901234"), ("anthropic", "claude-y", 1300, 260, "0.0042")],
        failed_first=True,
    )
    await store.write_streams([rec])
    [row] = await store.recent_streams(user, 5)
    assert row.stream_id == rec.stream_id and row.user_id == user and row.client_id == rec.client_id
    assert row.requested_model == "gpt-x"
    assert row.models_tried == ["gpt-x", "claude-y"]
    assert (row.status, row.finish_reason, row.error_code) == ("done", "stop", None)
    assert (row.input_tokens, row.output_tokens) == (2500, 300)
    assert (row.cached_input_tokens, row.reasoning_tokens) == (rec.cached_input_tokens, rec.reasoning_tokens)
    # Cache writes are kept apart from cache reads, on the stream and on each attempt.
    assert row.cache_write_input_tokens == rec.cache_write_input_tokens == 60 + 65
    assert row.cost_usd == Decimal("0.004212345678901234")
    assert row.estimated is True
    assert row.ttft_ms == pytest.approx(14.25)
    assert row.duration_ms == pytest.approx(250.0)
    assert row.started_at == t and row.ended_at == t + timedelta(milliseconds=250)
    first, second = row.segments
    assert (first.segment, first.provider, first.model, first.status, first.reason) == (
        1,
        "openai",
        "gpt-x",
        "failed",
        "server_error",
    )
    assert first.estimated is True and first.ttft_ms is None
    assert first.cost_usd == Decimal("0.000012345678901234")
    # What the provider itself said about the failure is kept with the attempt.
    assert (first.provider_code, first.provider_message) == (
        "server_error",
        "The server had an error while processing your request.",
    )
    assert (second.segment, second.status, second.reason, second.estimated) == (2, "ok", None, False)
    assert (second.provider_code, second.provider_message) == (None, None)
    assert (second.input_tokens, second.output_tokens, second.cached_input_tokens, second.reasoning_tokens) == (
        1300,
        260,
        130,
        52,
    )
    assert (first.cache_write_input_tokens, second.cache_write_input_tokens) == (60, 65)
    assert second.as_segment().usage.cache_write_input_tokens == 65
    assert second.duration_ms == pytest.approx(200.0)


async def test_recent_streams_are_newest_first_limited_and_per_user(backend: Backend) -> None:
    store, alice, bob, t = backend.store, new_user(), new_user(), window(2003)
    mine = [record(sid(), alice, t + timedelta(seconds=i)) for i in range(5)]
    theirs = [record(sid(), bob, t + timedelta(seconds=10 + i)) for i in range(2)]
    await store.write_streams(mine + theirs)
    got = await store.recent_streams(alice, 3)
    assert [r.stream_id for r in got] == [r.stream_id for r in reversed(mine)][:3]
    assert {r.user_id for r in await store.recent_streams(bob, 10)} == {bob}
    everyone = await store.recent_streams(None, 2)
    assert [r.stream_id for r in everyone] == [theirs[1].stream_id, theirs[0].stream_id]
    assert await store.recent_streams(alice, 0) == []


async def test_usage_summary_totals_days_models_providers(backend: Backend) -> None:
    store, alice, bob = backend.store, new_user(), new_user()
    t = window(2004)
    day2 = t + timedelta(days=1)
    records = [
        record(sid(), alice, t, [("openai", "gpt-x", 100, 10, "0.10")]),
        record(
            sid(),
            alice,
            t + timedelta(hours=1),
            [("openai", "gpt-x", 50, 5, "0.05"), ("gemini", "gem-z", 60, 30, "0.30")],
            failed_first=True,
        ),
        record(sid(), alice, day2, [("anthropic", "claude-y", 10, 1, "1.00")]),
        record(sid(), bob, day2, [("openai", "gpt-x", 1, 1, "0.01")]),
        # Outside the window: must not count.
        record(sid(), alice, t - timedelta(seconds=1), [("openai", "gpt-x", 9, 9, "9")]),
        record(sid(), alice, t + timedelta(days=2), [("openai", "gpt-x", 9, 9, "9")]),
    ]
    await store.write_streams(records)
    since, until = t, t + timedelta(days=2)

    s = await store.usage_summary(alice, since, until)
    assert s.user_id == alice and s.since == since and s.until == until
    assert s.totals.streams == 3 and s.totals.segments == 4
    assert s.totals.input_tokens == 220 and s.totals.output_tokens == 46
    assert (s.totals.cached_input_tokens, s.totals.cache_write_input_tokens) == (10 + 5 + 6 + 1, 5 + 2 + 3 + 0)
    assert s.totals.cost_usd == Decimal("1.45")
    assert [d.day for d in s.by_day] == [date(2004, 3, 14), date(2004, 3, 15)]
    assert [(d.totals.streams, d.totals.segments, d.totals.cost_usd) for d in s.by_day] == [
        (2, 3, Decimal("0.45")),
        (1, 1, Decimal("1.00")),
    ]
    assert [(m.provider, m.model, m.totals.streams, m.totals.segments, m.totals.cost_usd) for m in s.by_model] == [
        ("anthropic", "claude-y", 1, 1, Decimal("1.00")),
        ("gemini", "gem-z", 1, 1, Decimal("0.30")),
        ("openai", "gpt-x", 2, 2, Decimal("0.15")),
    ]
    assert [(p.provider, p.totals.cost_usd, p.totals.input_tokens) for p in s.by_provider] == [
        ("anthropic", Decimal("1.00"), 10),
        ("gemini", Decimal("0.30"), 60),
        ("openai", Decimal("0.15"), 150),
    ]
    assert [(d.day.day, d.totals.cache_write_input_tokens) for d in s.by_day] == [(14, 5 + 2 + 3), (15, 0)]
    assert [(m.model, m.totals.cache_write_input_tokens) for m in s.by_model] == [
        ("claude-y", 0),
        ("gem-z", 3),
        ("gpt-x", 5 + 2),
    ]
    assert [(p.provider, p.totals.cache_write_input_tokens) for p in s.by_provider] == [
        ("anthropic", 0),
        ("gemini", 3),
        ("openai", 7),
    ]

    everyone = await store.usage_summary(None, since, until)
    assert everyone.totals.streams == 4 and everyone.totals.cost_usd == Decimal("1.46")
    openai = next(p for p in everyone.by_provider if p.provider == "openai")
    assert (openai.totals.streams, openai.totals.cost_usd) == (3, Decimal("0.16"))

    empty = await store.usage_summary(new_user(), since, until)
    assert empty.totals.streams == 0 and empty.totals.cost_usd == 0
    assert empty.by_day == [] and empty.by_model == [] and empty.by_provider == []


async def test_user_spend_today_and_this_month(backend: Backend) -> None:
    store, user = backend.store, new_user()
    month = datetime(2005, 6, 1, tzinfo=UTC)
    today = datetime(2005, 6, 20, tzinfo=UTC)
    await store.write_streams(
        [
            record(sid(), user, month - timedelta(seconds=1), [("openai", "gpt-x", 1, 1, "5")]),
            record(sid(), user, month + timedelta(days=2), [("openai", "gpt-x", 1, 1, "0.25")]),
            record(sid(), user, today + timedelta(hours=3), [("openai", "gpt-x", 1, 1, "0.125")]),
            record(sid(), new_user(), today + timedelta(hours=3), [("openai", "gpt-x", 1, 1, "7")]),
        ]
    )
    spend = await store.user_spend(user, today, month)
    assert spend.today_usd == Decimal("0.125")
    assert spend.month_usd == Decimal("0.375")
    nothing = await store.user_spend(new_user(), today, month)
    assert nothing.today_usd == 0 and nothing.month_usd == 0


async def test_keys_crud(backend: Backend) -> None:
    store, user, other = backend.store, new_user(), new_user()
    await backend.add_user(user)
    await backend.add_user(other)
    assert await store.get_secret(user, "openai") is None
    assert await store.list_keys(user) == []

    info = await store.put_secret(user, "openai", "k1:AAAA", "k1", "sk-…abcd")
    assert (info.provider, info.hint, info.key_id) == ("openai", "sk-…abcd", "k1")
    await store.put_secret(user, "anthropic", "k1:BBBB", "k1", "sk-ant-…wxyz")
    await store.put_secret(other, "openai", "k1:CCCC", "k1", "sk-…0000")

    got = await store.get_secret(user, "openai")
    assert got is not None and (got.ciphertext, got.key_id, got.hint) == ("k1:AAAA", "k1", "sk-…abcd")
    assert "AAAA" not in repr(got)
    assert [k.provider for k in await store.list_keys(user)] == ["anthropic", "openai"]
    assert [s.ciphertext for s in await store.user_secrets(user)] == ["k1:BBBB", "k1:AAAA"]

    # Replace keeps created_at, moves updated_at.
    again = await store.put_secret(user, "openai", "k2:DDDD", "k2", "sk-…efgh")
    assert again.created_at == info.created_at and again.updated_at >= info.updated_at
    got = await store.get_secret(user, "openai")
    assert got is not None and (got.ciphertext, got.key_id) == ("k2:DDDD", "k2")

    # Compare-and-swap.
    assert not await store.replace_secret(user, "openai", "k1:AAAA", "k3:EEEE", "k3")
    assert await store.replace_secret(user, "openai", "k2:DDDD", "k3:EEEE", "k3")
    got = await store.get_secret(user, "openai")
    assert got is not None and (got.ciphertext, got.key_id, got.hint) == ("k3:EEEE", "k3", "sk-…efgh")

    everything = {(s.user_id, s.provider) for s in await store.all_secrets()}
    assert {(user, "openai"), (user, "anthropic"), (other, "openai")} <= everything

    assert await store.delete_secret(user, "openai")
    assert not await store.delete_secret(user, "openai")
    assert await store.get_secret(user, "openai") is None
    assert await store.get_secret(other, "openai") is not None


async def test_keys_and_budgets_need_a_known_user(backend: Backend) -> None:
    if backend.dsn is None:
        pytest.skip("SQLite has no user directory")
    with pytest.raises(UnknownUser):
        await backend.store.put_secret(new_user(), "openai", "k1:AAAA", "k1", "sk-…abcd")
    with pytest.raises(UnknownUser):
        await backend.store.set_budget(new_user(), Decimal(1), None)


async def test_budgets(backend: Backend) -> None:
    store, user = backend.store, new_user()
    await backend.add_user(user)
    assert await store.budget(user) is None
    b = await store.set_budget(user, Decimal("2.50"), Decimal("40"))
    assert (b.user_id, b.daily_usd, b.monthly_usd) == (user, Decimal("2.50"), Decimal("40"))
    got = await store.budget(user)
    assert got is not None and (got.daily_usd, got.monthly_usd) == (Decimal("2.50"), Decimal("40"))
    assert got.updated_at is not None
    await store.set_budget(user, None, Decimal("0.000001"))
    got = await store.budget(user)
    assert got is not None and got.daily_usd is None and got.monthly_usd == Decimal("0.000001")
    with pytest.raises(StoreError):
        await store.set_budget(user, Decimal(-1), None)


async def test_the_supabase_store_goes_through_postgrest(backend: Backend) -> None:
    if backend.emulator is None:
        pytest.skip("only the Supabase store speaks HTTP")
    user = new_user()
    await backend.add_user(user)
    before = len(backend.emulator.requests)
    await backend.store.write_streams([record(sid(), user, window(2006))])
    await backend.store.put_secret(user, "openai", "k1:AAAA", "k1", "sk-…abcd")
    await backend.store.get_secret(user, "openai")
    assert backend.emulator.requests[before:] == [
        ("POST", "/rest/v1/rpc/record_streams"),
        ("POST", "/rest/v1/rpc/put_user_secret"),
        ("GET", "/rest/v1/user_secrets"),
    ]


# -- the whole gateway on each store ----------------------------------------------------------------

SCRIPTS = {
    "plain": ("mock", None, "plain [[mock tokens=5]]"),
    "fallback": ("mock", ["mock-backup"], "fell back [[mock tokens=8 fail_after=3 only=mock]]"),
    "failed": ("mock", [], "refused [[mock fail_after=0 fail=bad_request]]"),
}


async def test_the_gateway_records_every_stream_as_it_reported_it(backend: Backend, live_factory: Any) -> None:
    overrides: dict[str, Any] = {"gateway_store": backend.name}
    if backend.name == "postgres":
        overrides["database_url"] = backend.dsn
    elif backend.name == "supabase":
        assert backend.emulator is not None and backend.url is not None
        overrides.update(supabase_url=backend.url, supabase_service_role_key=mint_key(JWT_SECRET, "service_role"))
    live = await live_factory(**overrides)
    user = new_user()
    token = live.services.auth.mint_dev_token(user)
    reported: dict[str, dict[str, Any]] = {}
    async with httpx.AsyncClient(base_url=live.url, headers={"authorization": f"Bearer {token}"}, timeout=20) as http:
        for model, fallbacks, prompt in SCRIPTS.values():
            body: dict[str, Any] = {"model": model, "messages": user_msg(prompt)}
            if fallbacks is not None:
                body["fallbacks"] = fallbacks
            events = [e.data for e in await collect_sse(http, "POST", "/v1/chat/stream", json=body)]
            usage = [e for e in events if e["type"] == "usage"]
            reported[events[-1]["stream_id"]] = {"last": events[-1], "usage": usage}
    await live.services.ledger.flush()
    assert live.services.ledger.backlog == 0
    reader = backend.store if backend.dsn is not None else live.services.store  # SQLite: the gateway's own file
    rows = {r.stream_id: r for r in await reader.recent_streams(user, 10)}
    assert set(rows) == set(reported)
    for sid_, rep in reported.items():
        row, last = rows[sid_], rep["last"]
        assert row.user_id == user
        if last["type"] == "done":
            assert row.status == "done" and row.finish_reason == last["finish_reason"]
            assert row.cost_usd == Decimal(last["cost_usd"])
            assert (row.input_tokens, row.output_tokens) == (
                last["usage"]["input_tokens"],
                last["usage"]["output_tokens"],
            )
        else:
            assert row.status == "error" and row.error_code == last["code"]
        assert [
            (s.segment, s.model, s.status, s.reason, s.output_tokens, s.cost_usd, s.estimated) for s in row.segments
        ] == [
            (
                u["segment"],
                u["model"],
                u["status"],
                u["reason"],
                u["output_tokens"],
                Decimal(u["cost_usd"]),
                u["estimated"],
            )
            for u in rep["usage"]
        ]
    fell_back = next(r for r in rows.values() if len(r.segments) == 2)
    assert fell_back.models_tried == ["mock", "mock-backup"]


async def test_a_sqlite_file_of_the_previous_schema_keeps_its_rows_and_learns_cache_writes(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(schema.SCHEMA_V1)
    old.execute("alter table stream_segments add column started_at text")
    old.executescript(schema.SCHEMA_V2)
    old.execute("alter table stream_segments add column provider_code text")
    old.execute("alter table stream_segments add column provider_message text")
    t = window(2011)
    stamp = t.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
    user = new_user()
    old.execute(
        "insert into stream_usage values ('st_old', ?, null, 'mock', 'mock', 'done', 'stop', null, 10, 2, 3, 0, "
        "'0.5', 0, 1.0, 2.0, ?, ?)",
        (user, stamp, stamp),
    )
    old.execute(
        "insert into stream_segments values ('st_old', 1, ?, 'mock', 'mock', 'ok', null, 10, 2, 3, 0, '0.5', 0, "
        "1.0, 2.0, ?, null, null)",
        (user, stamp),
    )
    old.execute("pragma user_version = 3")
    old.commit()
    old.close()

    store = SQLiteStore(path)
    await store.open()
    try:
        [row] = await store.recent_streams(user, 5)
        assert (row.stream_id, row.cached_input_tokens, row.cache_write_input_tokens) == ("st_old", 3, 0)
        assert row.segments[0].cache_write_input_tokens == 0
        rec = record(sid(), user, t + timedelta(minutes=1), [("anthropic", "claude-y", 400, 10, "0.01")])
        assert await store.write_streams([rec]) == 1
        summary = await store.usage_summary(user, t, t + timedelta(days=1))
        assert (summary.totals.streams, summary.totals.cache_write_input_tokens) == (2, 20)
    finally:
        await store.aclose()
