"""A real Redis client for tests, with a unique key prefix that is cleaned up afterwards."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tests.conftest import service_unavailable
from tests.support.proxy import via_local_port

# The Redis the tests share (GATEWAY_TEST_REDIS_URL points them at another one); every test uses its own prefix.
REDIS_URL = os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_address() -> tuple[str, int]:
    """Host and port of REDIS_URL, for a proxy in front of it."""
    parts = urlsplit(REDIS_URL)
    return parts.hostname or "127.0.0.1", parts.port or 6379


def redis_url_through(port: int) -> str:
    """REDIS_URL reached through a local proxy listening on `port`."""
    return via_local_port(REDIS_URL, port)


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
