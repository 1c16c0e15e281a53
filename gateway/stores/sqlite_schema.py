"""The SQLite store's tables, and the steps that bring an older file up to the current version."""

from __future__ import annotations

import aiosqlite

SCHEMA_VERSION = 4

# Version 1 (the first release) had stream_usage and stream_segments without a start time on segments.
SCHEMA_V1 = """
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

SCHEMA_V2 = """
update stream_segments set started_at =
  (select u.started_at from stream_usage u where u.stream_id = stream_segments.stream_id);
create index if not exists stream_usage_time on stream_usage (started_at);
create index if not exists stream_segments_user_time on stream_segments (user_id, started_at);
create table if not exists user_secrets (
  user_id text not null,
  provider text not null,
  ciphertext text not null,
  key_id text not null,
  hint text not null,
  created_at text not null,
  updated_at text not null,
  primary key (user_id, provider)
);
create table if not exists user_budgets (
  user_id text primary key,
  daily_usd text,
  monthly_usd text,
  updated_at text not null
);
"""

STREAM_COLS = (
    "stream_id, user_id, client_id, requested_model, models_tried, status, finish_reason, error_code, "
    "input_tokens, output_tokens, cached_input_tokens, reasoning_tokens, cost_usd, estimated, ttft_ms, "
    "duration_ms, started_at, ended_at, cache_write_input_tokens"
)
SEGMENT_COLS = (
    "stream_id, segment, user_id, provider, model, status, reason, input_tokens, output_tokens, "
    "cached_input_tokens, reasoning_tokens, cost_usd, estimated, ttft_ms, duration_ms, started_at, provider_code, "
    "provider_message, cache_write_input_tokens"
)


async def migrate(db: aiosqlite.Connection) -> None:
    """Brings a file of any earlier version up to `SCHEMA_VERSION`, one step after another."""
    async with db.execute("pragma user_version") as cur:
        row = await cur.fetchone()
    version = int(row[0]) if row else 0
    if version >= SCHEMA_VERSION:
        return
    await db.executescript(SCHEMA_V1)
    async with db.execute("pragma table_info(stream_segments)") as cur:
        columns = {row[1] for row in await cur.fetchall()}
    if "started_at" not in columns:
        await db.execute("alter table stream_segments add column started_at text")
    await db.executescript(SCHEMA_V2)
    # Version 3: what the provider itself said about a failed attempt.
    for column in ("provider_code", "provider_message"):
        if column not in columns:
            await db.execute(f"alter table stream_segments add column {column} text")
    # Version 4: input tokens written to the provider's prompt cache, on streams and segments.
    for table in ("stream_usage", "stream_segments"):
        async with db.execute(f"pragma table_info({table})") as cur:
            present = {row[1] for row in await cur.fetchall()}
        if "cache_write_input_tokens" not in present:
            await db.execute(f"alter table {table} add column cache_write_input_tokens integer not null default 0")
    await db.execute(f"pragma user_version = {SCHEMA_VERSION}")
    await db.commit()
