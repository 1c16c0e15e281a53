"""Single-use tickets: issued for a bearer token, bound to its user, one use, short-lived, refused with a
clear code otherwise; accepted on the WebSocket URL and the SSE resume URL."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import websockets

from gateway.auth import DEV_USER_ID, Principal
from gateway.tickets import MemoryTicketStore
from sessions.errors import GatewayError
from tests.conftest import Live
from tests.support.clients import user_msg


async def get_ticket(client: httpx.AsyncClient, token: str) -> str:
    r = await client.post("/v1/tickets", headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    ticket: str = r.json()["ticket"]
    return ticket


async def ws_close(url: str) -> tuple[int, str]:
    async with websockets.connect(url) as ws:
        with pytest.raises(websockets.ConnectionClosed) as info:
            async with asyncio.timeout(10):
                while True:
                    await ws.recv()
    assert info.value.rcvd is not None
    return info.value.rcvd.code, info.value.rcvd.reason


async def test_ticket_needs_a_bearer_token(live: Live) -> None:
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        r = await client.post("/v1/tickets")
        assert (r.status_code, r.json()["error"]["code"]) == (401, "missing_token")
        r = await client.post("/v1/tickets", headers=live.headers())
        body = r.json()
        assert r.status_code == 201 and body["ticket"].startswith("tk_") and 0 < body["expires_in"] <= 60
        assert live.token not in body["ticket"]


async def test_websocket_ticket_works_once(live: Live) -> None:
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        ticket = await get_ticket(client, live.token)
    url = f"{live.ws_url}/v1/ws?ticket={ticket}"
    async with websockets.connect(url) as ws:
        await ws.send(
            json.dumps({"type": "chat.start", "id": "t", "model": "mock", "messages": user_msg("q [[mock tokens=4]]")})
        )
        frames = [json.loads(await ws.recv()) for _ in range(7)]
        assert [f["type"] for f in frames][-1] == "done"
    assert await ws_close(url) == (4401, "ticket_used")
    assert await ws_close(f"{live.ws_url}/v1/ws?ticket=tk_made_up") == (4401, "invalid_ticket")
    assert await ws_close(f"{live.ws_url}/v1/ws?ticket=not-even-a-ticket") == (4401, "invalid_ticket")


async def test_expired_ticket_is_refused(live_factory: Callable[..., Any]) -> None:
    gw: Live = await live_factory(gateway_ticket_ttl_s=0.3)
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
        ws_ticket = await get_ticket(client, gw.token)
        sse_ticket = await get_ticket(client, gw.token)
        await asyncio.sleep(0.5)
        assert await ws_close(f"{gw.ws_url}/v1/ws?ticket={ws_ticket}") == (4401, "ticket_expired")
        r = await client.get(f"/v1/streams/st_x/events?ticket={sse_ticket}")
        assert (r.status_code, r.json()["error"]["code"]) == (401, "ticket_expired")


async def test_ticket_never_outlives_its_token(live: Live) -> None:
    short = live.services.auth.mint_dev_token(ttl_s=10)
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        r = await client.post("/v1/tickets", headers=live.headers(short))
    assert r.json()["expires_in"] <= 10


async def test_sse_resume_with_tickets_and_another_users_ticket(live: Live) -> None:
    """A browser's EventSource cannot send headers: it resumes with `?ticket=`. A ticket of user A opens
    nothing of user B's."""
    other = live.services.auth.mint_dev_token(user_id=str(uuid.uuid4()))
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        r = await client.post(
            "/v1/chat/stream",
            headers=live.headers(),
            json={"model": "mock", "messages": user_msg("q [[mock tokens=5]]")},
        )
        sid = r.headers["x-stream-id"]
        mine = await get_ticket(client, live.token)
        r = await client.get(f"/v1/streams/{sid}/events?ticket={mine}", headers={"last-event-id": f"{sid}:3"})
        assert r.status_code == 200
        seqs = [json.loads(line[6:])["seq"] for line in r.text.splitlines() if line.startswith("data: ")]
        assert seqs == list(range(4, seqs[-1] + 1)) and len(seqs) >= 4
        r = await client.get(f"/v1/streams/{sid}/events?ticket={mine}")
        assert (r.status_code, r.json()["error"]["code"]) == (401, "ticket_used")
        theirs = await get_ticket(client, other)
        r = await client.get(f"/v1/streams/{sid}/events?ticket={theirs}")
        assert (r.status_code, r.json()["error"]["code"]) == (404, "stream_not_found")
        # With a header, the ticket is not needed and not spent.
        spare = await get_ticket(client, live.token)
        r = await client.get(f"/v1/streams/{sid}/events?ticket={spare}", headers=live.headers())
        assert r.status_code == 200
        assert (await live.services.tickets.redeem(spare)).user_id == DEV_USER_ID


async def test_memory_store_single_use_under_concurrency() -> None:
    store = MemoryTicketStore()
    who = Principal(str(uuid.uuid4()), "authenticated", time.time() + 3600)
    ticket = await store.issue(who, 60)
    results = await asyncio.gather(*(store.redeem(ticket) for _ in range(10)), return_exceptions=True)
    assert sum(1 for r in results if r == who) == 1
    assert {r.code for r in results if isinstance(r, GatewayError)} == {"ticket_used"}


async def test_memory_store_expiry_and_pruning() -> None:
    now = [1000.0]
    store = MemoryTicketStore(max_entries=50, tombstone_s=10, clock=lambda: now[0])
    who = Principal(str(uuid.uuid4()), "authenticated")
    first = await store.issue(who, 60)
    now[0] += 61
    with pytest.raises(GatewayError) as info:
        await store.redeem(first)
    assert info.value.code == "ticket_expired"
    now[0] += 20  # past the tombstone: forgotten on the next issue
    await store.issue(who, 60)
    with pytest.raises(GatewayError) as info:
        await store.redeem(first)
    assert info.value.code == "invalid_ticket"
    for _ in range(200):
        await store.issue(who, 60)
    assert len(store) <= 50  # bounded, whatever a client does
