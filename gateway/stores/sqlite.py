"""SQLite store (the embedded default): one file under the data dir, WAL mode."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import aiosqlite

from gateway.stores.base import StoreUnavailable
from sessions.records import StreamRecord

SCHEMA = """
create table if not exists stream_usage (
  stream_id text primary key,
  user_id text not null,
  client_id text,
  requested_model text not null,
  models_tried text not null,
  status text not null,
  finish_reason text,
  error_code text,
  input_tokens integer not null,
  output_tokens integer not null,
  cached_input_tokens integer not null,
  reasoning_tokens integer not null,
  cost_usd text not null,
  estimated integer not null,
  ttft_ms real,
  duration_ms real not null,
  started_at text not null,
  ended_at text not null
);
create index if not exists stream_usage_user_time on stream_usage (user_id, started_at);
create table if not exists stream_segments (
  stream_id text not null,
  segment integer not null,
  user_id text not null,
  provider text not null,
  model text not null,
  status text not null,
  reason text,
  input_tokens integer not null,
  output_tokens integer not null,
  cached_input_tokens integer not null,
  reasoning_tokens integer not null,
  cost_usd text not null,
  estimated integer not null,
  ttft_ms real,
  duration_ms real not null,
  primary key (stream_id, segment)
);
"""


class SQLiteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self.path)
        await self._db.execute("pragma journal_mode=wal")
        await self._db.execute("pragma synchronous=normal")
        await self._db.executescript(SCHEMA)
        await self._db.commit()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreUnavailable("store is not open")
        return self._db

    async def aclose(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def ping(self) -> bool:
        try:
            async with self.db.execute("select 1") as cur:
                return (await cur.fetchone()) is not None
        except (sqlite3.Error, StoreUnavailable):
            return False

    async def write_streams(self, records: Sequence[StreamRecord]) -> None:
        try:
            await self.db.executemany(
                "insert or ignore into stream_usage values (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        r.stream_id,
                        r.user_id,
                        r.client_id,
                        r.requested_model,
                        ",".join(r.models_tried),
                        r.status,
                        r.finish_reason,
                        r.error_code,
                        r.input_tokens,
                        r.output_tokens,
                        r.cached_input_tokens,
                        r.reasoning_tokens,
                        str(r.cost_usd),
                        int(r.estimated),
                        r.ttft_ms,
                        r.duration_ms,
                        r.started_at.isoformat(),
                        r.ended_at.isoformat(),
                    )
                    for r in records
                ],
            )
            await self.db.executemany(
                "insert or ignore into stream_segments values (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        r.stream_id,
                        s.number,
                        r.user_id,
                        s.provider,
                        s.model,
                        s.status,
                        s.reason,
                        s.usage.input_tokens,
                        s.usage.output_tokens,
                        s.usage.cached_input_tokens,
                        s.usage.reasoning_tokens,
                        str(s.cost_usd),
                        int(s.estimated),
                        s.ttft_ms,
                        s.duration_ms,
                    )
                    for r in records
                    for s in r.segments
                ],
            )
            await self.db.commit()
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(str(exc)) from exc
