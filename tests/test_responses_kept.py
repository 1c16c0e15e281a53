"""Kept responses: bounded in memory (oldest first, by bytes; expired after the TTL), and shared through Redis so a
response made on one instance is built on from another."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI

from gateway.response_store import Kept, MemoryResponseStore
from tests.conftest import Live
from tests.support.redis import REDIS_URL, redis_prefix


def kept(user: str, text: str) -> Kept:
    return Kept(user, {"id": "r", "output": [{"id": "msg_k_0", "type": "message", "content": text}]}, [])


async def test_memory_keeps_what_fits_drops_the_oldest_and_forgets_after_the_ttl() -> None:
    now = [0.0]
    size = len(kept("u", "x" * 100).to_bytes())
    store = MemoryResponseStore(ttl_s=10, max_bytes=2 * size, clock=lambda: now[0])
    for rid in ("a", "b", "c"):
        await store.put(rid, kept("u", "x" * 100))
    assert await store.get("a", "u") is None  # the oldest went to make room
    b = await store.get("b", "u")
    assert b is not None and b.item("msg_k_0") is not None and b.item("other") is None
    assert await store.get("b", "someone-else") is None  # another user's response reads as unknown
    assert not await store.delete("b", "someone-else") and await store.delete("b", "u")
    assert await store.get("b", "u") is None
    now[0] = 10.0
    assert await store.get("c", "u") is None  # past its TTL
    await store.put("huge", kept("u", "x" * 10 * size))
    assert await store.get("huge", "u") is None  # larger than the whole budget: not kept


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    async with redis_prefix() as (_client, value):
        yield value


async def test_a_response_from_one_instance_is_built_on_from_another(
    prefix: str, live_factory: Callable[..., Any]
) -> None:
    opts = {"redis_url": REDIS_URL, "gateway_redis_prefix": prefix, "gateway_drain_deadline_s": 0.5}
    a: Live = await live_factory(**opts)
    b: Live = await live_factory(**opts)
    async with (
        AsyncOpenAI(base_url=f"{a.url}/v1", api_key=a.token, max_retries=0) as on_a,
        AsyncOpenAI(base_url=f"{b.url}/v1", api_key=b.token, max_retries=0) as on_b,
    ):
        first = await on_a.responses.create(model="mock", input="shared question [[mock tokens=4]]")
        assert (await on_b.responses.retrieve(first.id)).output_text == first.output_text
        second = await on_b.responses.create(
            model="mock", input="go on [[mock tokens=4]]", previous_response_id=first.id
        )
        # The mock seeds its words from the first user turn: the conversation came from A.
        assert second.output_text == first.output_text
        await on_b.responses.delete(first.id)
        with pytest.raises(openai.NotFoundError) as gone:
            await on_a.responses.retrieve(first.id)
        assert gone.value.code == "response_not_found"
