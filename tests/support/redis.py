"""A real Redis client for tests, with a unique key prefix that is cleaned up afterwards."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tests.conftest import service_unavailable

REDIS_URL = "redis://127.0.0.1:6379/0"


@asynccontextmanager
async def redis_prefix() -> AsyncIterator[tuple[Redis, str]]:
    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except (RedisError, OSError):
        await client.aclose()
        service_unavailable("Redis")
    prefix = f"gwtest-{secrets.token_hex(5)}"
    try:
        yield client, prefix
    finally:
        keys = [k async for k in client.scan_iter(f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
