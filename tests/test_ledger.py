"""The ledger writer: batching, spooling through an outage, replay, torn spool lines, refused records.

Outages are real: the Postgres store talks to the real server through a TCP proxy the test cuts.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import orjson
import pytest

from gateway.stores.postgres import PostgresStore
from gateway.stores.sqlite import SQLiteStore
from sessions.codec import record_to_dict
from sessions.ledger import LedgerWriter, Spool
from sessions.records import StreamRecord
from tests.conftest import service_unavailable
from tests.support import pg
from tests.support.proxy import TcpProxy
from tests.support.records import new_user, record

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
    proxy = TcpProxy("127.0.0.1", 5432)
    port = await proxy.start()
    dsn = database.replace("127.0.0.1:5432", f"127.0.0.1:{port}")
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
