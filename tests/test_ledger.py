"""The ledger writer: batching, spooling through an outage, replay, torn spool lines, refused records.

Outages are real: the Postgres store talks to the real server through a TCP proxy the test cuts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import orjson
import pytest

from gateway.auth import DEV_ISSUER, DEV_USER_ID
from gateway.stores.postgres import PostgresStore
from gateway.stores.sqlite import SQLiteStore
from sessions.codec import record_from_dict, record_to_dict
from sessions.ledger import LedgerWriter, Spool
from sessions.records import StreamRecord
from tests.conftest import Live, service_unavailable
from tests.support import pg
from tests.support.clients import collect_sse, user_msg
from tests.support.proxy import TcpProxy, via_local_port
from tests.support.records import new_user, record
from tests.support.server import free_port

ROOT = Path(__file__).resolve().parent.parent

T0 = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def records(n: int, user: str | None = None) -> list[StreamRecord]:
    user = user or new_user()
    return [record(f"st_{secrets.token_hex(6)}", user, T0 + timedelta(seconds=i)) for i in range(n)]


async def wait_for(predicate: object, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.02)


@pytest.fixture(scope="module")
async def database() -> AsyncIterator[str]:
    if not await pg.reachable():
        service_unavailable("PostgreSQL")
    async with pg.fresh_database("gw_ledger") as dsn:
        yield dsn


@pytest.fixture
async def proxied(database: str) -> AsyncIterator[tuple[TcpProxy, str]]:
    proxy = TcpProxy(*pg.address())
    port = await proxy.start()
    dsn = via_local_port(database, port)
    try:
        yield proxy, dsn
    finally:
        await proxy.stop()


async def count_rows(dsn: str, stream_ids: list[str]) -> tuple[int, int, int]:
    """(stream rows, distinct streams, segment rows) among the given streams."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "select count(*), count(distinct stream_id), "
            "(select count(*) from stream_segments where stream_id = any($1::text[])) "
            "from stream_usage where stream_id = any($1::text[])",
            stream_ids,
        )
    finally:
        await conn.close()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


# -- batching ------------------------------------------------------------------------------------


async def test_batches_by_size_without_waiting_for_the_interval(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "db.sqlite3")
    await store.open()
    ledger = LedgerWriter(store, spool_path=tmp_path / "spool.jsonl", batch_size=10, interval_s=3600)
    ledger.start()
    try:
        for r in records(9):
            ledger.submit(r)
        await asyncio.sleep(0.2)
        assert ledger.written == 0 and ledger.backlog == 9
        for r in records(1):
            ledger.submit(r)
        await wait_for(lambda: ledger.written == 10)
        assert len(await store.recent_streams(None, 100)) == 10
    finally:
        await ledger.aclose()
        await store.aclose()


async def test_batches_by_time(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "db.sqlite3")
    await store.open()
    ledger = LedgerWriter(store, spool_path=tmp_path / "spool.jsonl", batch_size=1000, interval_s=0.05)
    ledger.start()
    try:
        for r in records(3):
            ledger.submit(r)
        await wait_for(lambda: ledger.written == 3)
    finally:
        await ledger.aclose()
        await store.aclose()


async def test_close_flushes_what_is_pending(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "db.sqlite3")
    await store.open()
    ledger = LedgerWriter(store, spool_path=tmp_path / "spool.jsonl", batch_size=1000, interval_s=3600)
    ledger.start()
    batch = records(7)
    for r in batch:
        ledger.submit(r)
    await ledger.aclose()
    assert {r.stream_id for r in await store.recent_streams(None, 100)} == {r.stream_id for r in batch}
    await store.aclose()


# -- outage, spool, replay ---------------------------------------------------------------------------


async def test_outage_spools_then_replays_exactly_once(proxied: tuple[TcpProxy, str], tmp_path: Path) -> None:
    proxy, dsn = proxied
    store = PostgresStore(dsn, connect_timeout_s=2)
    await store.open()
    spool = tmp_path / "spool.jsonl"
    ledger = LedgerWriter(store, spool_path=spool, batch_size=20, interval_s=0.05, retry_initial_s=0.1, retry_max_s=0.3)
    ledger.start()
    first = records(30)
    try:
        for r in first[:10]:
            ledger.submit(r)
        await wait_for(lambda: ledger.written == 10)

        await proxy.set_down()
        for r in first[10:]:
            ledger.submit(r)
        await wait_for(lambda: ledger.spooled == 20)
        assert ledger.store_down
        lines = spool.read_bytes().splitlines()
        assert len(lines) == 20
        assert {orjson.loads(line)["stream_id"] for line in lines} == {r.stream_id for r in first[10:]}

        proxy.set_up()
        await wait_for(lambda: ledger.backlog == 0 and not ledger.store_down)
        assert not spool.exists()
        ids = [r.stream_id for r in first]
        assert await count_rows(pg.dsn_for(dsn.rsplit("/", 1)[1]), ids) == (30, 30, 30)
    finally:
        await ledger.aclose()
        await store.aclose()


async def test_a_spool_left_by_a_crash_is_replayed_at_start_and_never_double_counted(
    database: str, tmp_path: Path
) -> None:
    spool_path = tmp_path / "spool.jsonl"
    batch = records(25)
    Spool(spool_path).append(batch)
    store = PostgresStore(database)
    await store.open()
    # A replay that was cut short by the crash: some of the spooled records already reached the store.
    await store.write_streams(batch[:12])
    ledger = LedgerWriter(store, spool_path=spool_path, batch_size=10, interval_s=0.05)
    ledger.start()
    try:
        assert ledger.spooled == 25
        await wait_for(lambda: ledger.backlog == 0)
        assert not spool_path.exists()
        assert await count_rows(database, [r.stream_id for r in batch]) == (25, 25, 25)
    finally:
        await ledger.aclose()
        await store.aclose()


async def test_a_torn_last_line_is_set_aside_and_appends_continue_on_a_new_line(tmp_path: Path) -> None:
    spool_path = tmp_path / "spool.jsonl"
    good = records(3)
    Spool(spool_path).append(good)
    torn = orjson.dumps(record_to_dict(records(1)[0]))[:57]
    with open(spool_path, "ab") as f:
        f.write(torn)  # the process died in the middle of this write
    store = SQLiteStore(tmp_path / "db.sqlite3")
    await store.open()
    ledger = LedgerWriter(store, spool_path=spool_path, batch_size=10, interval_s=0.05)
    ledger.start()
    try:
        later = records(2)
        for r in later:
            ledger.submit(r)
        await wait_for(lambda: ledger.backlog == 0 and ledger.written == 5)
        written = {r.stream_id for r in await store.recent_streams(None, 100)}
        assert written == {r.stream_id for r in good + later}
        rejected = (tmp_path / "spool.jsonl.rejected").read_bytes().splitlines()
        assert len(rejected) == 1 and orjson.loads(rejected[0])["line"] == torn.decode()
    finally:
        await ledger.aclose()
        await store.aclose()


async def test_a_record_the_store_refuses_is_set_aside_and_the_rest_written(database: str, tmp_path: Path) -> None:
    store = PostgresStore(database)
    await store.open()
    ledger = LedgerWriter(store, spool_path=tmp_path / "spool.jsonl", batch_size=10, interval_s=0.05)
    ledger.start()
    try:
        batch = records(4)
        poison = record("st_poison_" + secrets.token_hex(4), "not-a-uuid", T0)
        for r in [*batch[:2], poison, *batch[2:]]:
            ledger.submit(r)
        await wait_for(lambda: ledger.written == 4 and ledger.rejected == 1)
        assert ledger.backlog == 0 and not ledger.store_down
        assert await count_rows(database, [r.stream_id for r in batch]) == (4, 4, 4)
        [line] = (tmp_path / "spool.jsonl.rejected").read_bytes().splitlines()
        entry = orjson.loads(line)
        assert entry["record"]["stream_id"] == poison.stream_id and entry["reason"]
    finally:
        await ledger.aclose()
        await store.aclose()


async def test_shutdown_during_an_outage_spools_everything(proxied: tuple[TcpProxy, str], tmp_path: Path) -> None:
    proxy, dsn = proxied
    await proxy.set_down()
    store = PostgresStore(dsn, connect_timeout_s=1)
    await store.open()
    spool_path = tmp_path / "spool.jsonl"
    ledger = LedgerWriter(store, spool_path=spool_path, batch_size=1000, interval_s=3600)
    ledger.start()
    batch = records(6)
    for r in batch:
        ledger.submit(r)
    await ledger.aclose()
    await store.aclose()
    assert [orjson.loads(line)["stream_id"] for line in spool_path.read_bytes().splitlines()] == [
        r.stream_id for r in batch
    ]


# -- through the gateway ------------------------------------------------------------------------------

STREAMS = 200


async def run_streams(url: str, token: str, n: int, concurrency: int = 16) -> list[str]:
    """n short mock streams over SSE; returns their stream ids (every one must end with `done`)."""
    sem = asyncio.Semaphore(concurrency)
    ids: list[str] = []
    async with httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=30) as http:

        async def one(i: int) -> None:
            async with sem:
                sse = await collect_sse(
                    http,
                    "POST",
                    "/v1/chat/stream",
                    json={"model": "mock", "messages": user_msg(f"q{i} [[mock tokens=4]]")},
                )
                assert sse[-1].data["type"] == "done", sse[-1].data
                ids.append(sse[-1].data["stream_id"])

        await asyncio.gather(*(one(i) for i in range(n)))
    return ids


@pytest.mark.slow
async def test_200_streams_complete_while_the_database_is_down_and_land_exactly_once(
    proxied: tuple[TcpProxy, str], live_factory: Any, database: str
) -> None:
    proxy, dsn = proxied
    await proxy.set_down()
    live: Live = await live_factory(
        gateway_store="postgres",
        database_url=dsn,
        gateway_starts_per_minute=100_000,
        gateway_max_concurrent_streams=64,
    )
    assert not await live.services.store.ping()
    ids = await run_streams(live.url, live.token, STREAMS)
    assert len(set(ids)) == STREAMS
    ledger = live.services.ledger
    await wait_for(lambda: ledger.spooled == STREAMS, timeout=30)
    assert await count_rows(database, ids) == (0, 0, 0)

    proxy.set_up()
    await wait_for(lambda: ledger.backlog == 0 and not ledger.store_down, timeout=60)
    assert await count_rows(database, ids) == (STREAMS, STREAMS, STREAMS)
    # Flushing again (as shutdown does) writes nothing twice.
    await ledger.flush()
    assert await count_rows(database, ids) == (STREAMS, STREAMS, STREAMS)


def gateway_env(data_dir: Path, dsn: str, signing_key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "DATABASE_URL", "SUPABASE_"))}
    env.update(
        GATEWAY_ENV="development",
        GATEWAY_DATA_DIR=str(data_dir),
        GATEWAY_STORE="postgres",
        DATABASE_URL=dsn,
        GATEWAY_DEV_SIGNING_KEY=signing_key,
        GATEWAY_MOCK_DELAY_MS="0",
        GATEWAY_STARTS_PER_MINUTE="100000",
        GATEWAY_MAX_CONCURRENT_STREAMS="64",
        GATEWAY_DRAIN_DEADLINE_S="1",
        LOG_LEVEL="WARNING",
    )
    return env


@contextlib.asynccontextmanager
async def gateway_process(env: dict[str, str]) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "--port",
        str(port),
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            async with asyncio.timeout(60):
                while True:
                    assert proc.returncode is None, "the gateway exited during start-up"
                    with contextlib.suppress(httpx.TransportError):
                        if (await http.get(f"{url}/healthz")).status_code == 200:
                            break
                    await asyncio.sleep(0.1)
        yield proc, url
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


def dev_token(signing_key: str) -> str:
    now = int(time.time())
    claims = {"sub": DEV_USER_ID, "role": "authenticated", "aud": "authenticated", "iss": DEV_ISSUER}
    return jwt.encode({**claims, "iat": now, "exp": now + 600}, signing_key, algorithm="HS256")


@pytest.mark.slow
async def test_a_crash_with_records_spooled_loses_nothing_and_counts_nothing_twice(
    proxied: tuple[TcpProxy, str], database: str, tmp_path: Path
) -> None:
    proxy, dsn = proxied
    await proxy.set_down()
    key = "crash-test-signing-key-0123456789abcdef0123456789"
    env = gateway_env(tmp_path / "data", dsn, key)
    spool = tmp_path / "data" / "ledger-spool.jsonl"
    n = 60
    async with gateway_process(env) as (proc, url):
        ids = await run_streams(url, dev_token(key), n)

        def spooled() -> int:
            return len(spool.read_bytes().splitlines()) if spool.exists() else 0

        await wait_for(lambda: spooled() == n, timeout=30)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert await count_rows(database, ids) == (0, 0, 0)

    # The database comes back; part of the spool had already been replayed when the process died.
    proxy.set_up()
    lines = spool.read_bytes().splitlines()
    already = [record_from_dict(orjson.loads(line)) for line in lines[:15]]
    store = PostgresStore(database)
    await store.open()
    await store.write_streams(already)
    await store.aclose()

    async with gateway_process(env) as (proc, url):
        await wait_for(lambda: not spool.exists(), timeout=60)
        assert await count_rows(database, ids) == (n, n, n)
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    assert await count_rows(database, ids) == (n, n, n)


async def test_a_database_nobody_listens_for_is_unavailable_not_an_error(tmp_path: Path) -> None:
    from gateway.stores.base import StoreUnavailable
    from gateway.stores.supabase import SupabaseStore

    port = free_port()  # nothing listens here
    stores = [
        PostgresStore(f"postgresql://postgres@127.0.0.1:{port}/nothing", connect_timeout_s=2),
        SupabaseStore(f"http://127.0.0.1:{port}", "service-role-key", connect_timeout_s=2),
    ]
    for store in stores:
        await store.open()  # must not raise: the gateway starts and spools
        try:
            assert not await store.ping()
            with pytest.raises(StoreUnavailable):
                await store.write_streams(records(1))
            with pytest.raises(StoreUnavailable):
                await store.user_secrets(new_user())
        finally:
            await store.aclose()
