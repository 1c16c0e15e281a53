"""SQLite store (the embedded default): one file under the data dir, WAL mode.

Money is stored as exact decimal text and summed in Python, which is fine at a single gateway's scale.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiosqlite

from gateway.stores.base import (
    Budget,
    DayUsage,
    KeyInfo,
    ModelUsage,
    ProviderUsage,
    SegmentRow,
    Spend,
    StoredSecret,
    StoreError,
    StoreUnavailable,
    StreamRow,
    UsageSummary,
)
from gateway.stores.sqlite_rows import Acc, dec, dt, segment_values, stream_values, ts
from gateway.stores.sqlite_schema import SEGMENT_COLS, STREAM_COLS, migrate
from sessions.records import StreamRecord


class SQLiteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self.path)
        # The busy timeout first: with several workers on one file, switching to WAL and migrating wait their turn.
        await self._db.execute("pragma busy_timeout=5000")
        await self._db.execute("pragma journal_mode=wal")
        await self._db.execute("pragma synchronous=normal")
        await migrate(self._db)

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

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            async with self.db.execute(sql, params) as cur:
                rows = await cur.fetchall()
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"sqlite: {exc}") from exc
        return list(rows)

    async def _write(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            cur = await self.db.execute(sql, params)
            await self.db.commit()
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"sqlite: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"sqlite: {exc}") from exc
        return int(cur.rowcount)

    # -- ledger ---------------------------------------------------------------------

    async def write_streams(self, records: Sequence[StreamRecord]) -> int:
        db = self.db
        new = 0
        try:
            for r in records:
                cur = await db.execute(
                    f"insert or ignore into stream_usage ({STREAM_COLS}) values ({','.join('?' * 19)})",
                    stream_values(r),
                )
                new += cur.rowcount
            await db.executemany(
                f"insert or ignore into stream_segments ({SEGMENT_COLS}) values ({','.join('?' * 19)})",
                [segment_values(r, s) for r in records for s in r.segments],
            )
            await db.commit()
        except sqlite3.OperationalError as exc:
            await db.rollback()
            raise StoreUnavailable(f"sqlite: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            await db.rollback()
            raise StoreError(f"sqlite: {exc}") from exc
        return new

    async def user_spend(self, user_id: str, day_start: datetime, month_start: datetime) -> Spend:
        lo = min(day_start, month_start)
        rows = await self._fetch(
            "select started_at, cost_usd from stream_usage where user_id = ? and started_at >= ?", (user_id, ts(lo))
        )
        day_s, month_s = ts(day_start), ts(month_start)
        today = sum((Decimal(c) for t, c in rows if t >= day_s), Decimal(0))
        month = sum((Decimal(c) for t, c in rows if t >= month_s), Decimal(0))
        return Spend(today, month)

    async def usage_summary(self, user_id: str | None, since: datetime, until: datetime) -> UsageSummary:
        where = "started_at >= ? and started_at < ?"
        params: list[Any] = [ts(since), ts(until)]
        if user_id is not None:
            where += " and user_id = ?"
            params.append(user_id)
        sums = "input_tokens, output_tokens, cached_input_tokens, reasoning_tokens, cost_usd, cache_write_input_tokens"
        streams = await self._fetch(f"select stream_id, started_at, {sums} from stream_usage where {where}", params)
        segments = await self._fetch(
            f"select stream_id, provider, model, {sums} from stream_segments where {where}", params
        )
        seg_count: dict[str, int] = defaultdict(int)
        for seg in segments:
            seg_count[seg[0]] += 1
        total = Acc()
        days: dict[date, Acc] = defaultdict(Acc)
        for sid, started, *row in streams:
            for acc in (total, days[dt(started).date()]):
                acc.add(sid, row)
                acc.segments += seg_count[sid] - 1  # `add` counted one; a stream counts its segments here
        models: dict[tuple[str, str], Acc] = defaultdict(Acc)
        providers: dict[str, Acc] = defaultdict(Acc)
        for sid, provider, model, *row in segments:
            models[(provider, model)].add(sid, row)
            providers[provider].add(sid, row)
        return UsageSummary(
            user_id=user_id,
            since=since,
            until=until,
            totals=total.totals(),
            by_day=[DayUsage(d, days[d].totals()) for d in sorted(days)],
            by_model=sorted(
                (ModelUsage(p, m, a.totals()) for (p, m), a in models.items()),
                key=lambda u: (-u.totals.cost_usd, u.provider, u.model),
            ),
            by_provider=sorted(
                (ProviderUsage(p, a.totals()) for p, a in providers.items()),
                key=lambda u: (-u.totals.cost_usd, u.provider),
            ),
        )

    async def recent_streams(self, user_id: str | None, limit: int = 50) -> list[StreamRow]:
        where, params = ("where user_id = ?", [user_id]) if user_id is not None else ("", [])
        rows = await self._fetch(
            f"select {STREAM_COLS} from stream_usage {where} order by started_at desc, stream_id limit ?",
            [*params, max(0, limit)],
        )
        if not rows:
            return []
        ids = [r[0] for r in rows]
        segs = await self._fetch(
            "select stream_id, segment, provider, model, status, reason, input_tokens, output_tokens, "
            "cached_input_tokens, reasoning_tokens, cost_usd, estimated, ttft_ms, duration_ms, provider_code, "
            "provider_message, cache_write_input_tokens from stream_segments "
            f"where stream_id in ({','.join('?' * len(ids))}) order by stream_id, segment",
            ids,
        )
        by_stream: dict[str, list[SegmentRow]] = defaultdict(list)
        for s in segs:
            by_stream[s[0]].append(
                SegmentRow(
                    *(s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], Decimal(s[10]), bool(s[11]), s[12], s[13]),
                    provider_code=s[14],
                    provider_message=s[15],
                    cache_write_input_tokens=s[16],
                )
            )
        return [
            StreamRow(
                stream_id=r[0],
                user_id=r[1],
                client_id=r[2],
                requested_model=r[3],
                models_tried=[m for m in r[4].split(",") if m],
                status=r[5],
                finish_reason=r[6],
                error_code=r[7],
                input_tokens=r[8],
                output_tokens=r[9],
                cached_input_tokens=r[10],
                reasoning_tokens=r[11],
                cost_usd=Decimal(r[12]),
                estimated=bool(r[13]),
                ttft_ms=r[14],
                duration_ms=r[15],
                started_at=dt(r[16]),
                ended_at=dt(r[17]),
                segments=by_stream.get(r[0], []),
                cache_write_input_tokens=r[18],
            )
            for r in rows
        ]

    # -- keys ---------------------------------------------------------------------------

    @staticmethod
    def _secret(row: Iterable[Any]) -> StoredSecret:
        user_id, provider, ciphertext, key_id, hint, created, updated = row
        return StoredSecret(user_id, provider, ciphertext, key_id, hint, dt(created), dt(updated))

    _SECRET_COLS = "user_id, provider, ciphertext, key_id, hint, created_at, updated_at"  # noqa: S105

    async def put_secret(self, user_id: str, provider: str, ciphertext: str, key_id: str, hint: str) -> KeyInfo:
        now = ts(datetime.now(UTC))
        await self._write(
            f"insert into user_secrets ({self._SECRET_COLS}) values (?,?,?,?,?,?,?) "
            "on conflict (user_id, provider) do update set ciphertext = excluded.ciphertext, "
            "key_id = excluded.key_id, hint = excluded.hint, updated_at = excluded.updated_at",
            (user_id, provider, ciphertext, key_id, hint, now, now),
        )
        stored = await self.get_secret(user_id, provider)
        if stored is None:
            raise StoreError("the key vanished right after it was stored")
        return stored.info

    async def get_secret(self, user_id: str, provider: str) -> StoredSecret | None:
        rows = await self._fetch(
            f"select {self._SECRET_COLS} from user_secrets where user_id = ? and provider = ?", (user_id, provider)
        )
        return self._secret(rows[0]) if rows else None

    async def user_secrets(self, user_id: str) -> list[StoredSecret]:
        rows = await self._fetch(
            f"select {self._SECRET_COLS} from user_secrets where user_id = ? order by provider", (user_id,)
        )
        return [self._secret(r) for r in rows]

    async def list_keys(self, user_id: str) -> list[KeyInfo]:
        return [s.info for s in await self.user_secrets(user_id)]

    async def delete_secret(self, user_id: str, provider: str) -> bool:
        n = await self._write("delete from user_secrets where user_id = ? and provider = ?", (user_id, provider))
        return n > 0

    async def all_secrets(self) -> list[StoredSecret]:
        rows = await self._fetch(f"select {self._SECRET_COLS} from user_secrets order by user_id, provider")
        return [self._secret(r) for r in rows]

    async def replace_secret(
        self, user_id: str, provider: str, old_ciphertext: str, new_ciphertext: str, key_id: str
    ) -> bool:
        n = await self._write(
            "update user_secrets set ciphertext = ?, key_id = ? where user_id = ? and provider = ? and ciphertext = ?",
            (new_ciphertext, key_id, user_id, provider, old_ciphertext),
        )
        return n > 0

    # -- budgets ------------------------------------------------------------------------------

    async def budget(self, user_id: str) -> Budget | None:
        rows = await self._fetch(
            "select daily_usd, monthly_usd, updated_at from user_budgets where user_id = ?", (user_id,)
        )
        if not rows:
            return None
        daily, monthly, updated = rows[0]
        return Budget(user_id, dec(daily), dec(monthly), dt(updated))

    async def set_budget(self, user_id: str, daily_usd: Decimal | None, monthly_usd: Decimal | None) -> Budget:
        for cap in (daily_usd, monthly_usd):
            if cap is not None and (not cap.is_finite() or cap < 0):
                raise StoreError("a budget cap must be a non-negative amount")
        now = datetime.now(UTC)
        await self._write(
            "insert into user_budgets (user_id, daily_usd, monthly_usd, updated_at) values (?,?,?,?) "
            "on conflict (user_id) do update set daily_usd = excluded.daily_usd, "
            "monthly_usd = excluded.monthly_usd, updated_at = excluded.updated_at",
            (
                user_id,
                None if daily_usd is None else str(daily_usd),
                None if monthly_usd is None else str(monthly_usd),
                ts(now),
            ),
        )
        return Budget(user_id, daily_usd, monthly_usd, now)
