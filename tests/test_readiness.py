"""Readiness: a database outage keeps the instance in rotation (streams are spooled and billed later)."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Live

DEAD_DB = "postgresql://postgres@127.0.0.1:1/nowhere"


async def test_store_outage_is_degraded_not_unready(live_factory: Any) -> None:
    gw: Live = await live_factory(gateway_store="postgres", database_url=DEAD_DB)
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
        r = await client.get("/readyz")
        assert r.status_code == 200
        assert r.json() == {"status": "degraded", "store": "unreachable", "ledger": "spooling"}
        events = await gw.chat(client, "q [[mock tokens=5]]")
    assert events[-1].data["type"] == "done"
    await gw.services.ledger.flush()
    assert gw.services.ledger.backlog >= 1  # waiting in the spool for the database


async def test_unready_when_nothing_can_hold_the_ledger(live_factory: Any) -> None:
    gw: Live = await live_factory(gateway_store="postgres", database_url=DEAD_DB)
    data_dir = gw.services.settings.gateway_data_dir
    moved = data_dir.with_name(data_dir.name + "-away")
    data_dir.rename(moved)  # the spool's folder is gone: an outage would now lose billed streams
    try:
        async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
            r = await client.get("/readyz")
        assert r.status_code == 503 and r.json()["status"] == "store_unreachable"
    finally:
        moved.rename(data_dir)
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
        assert (await client.get("/readyz")).json()["status"] == "degraded"


async def test_a_fresh_instance_creates_its_data_dir_and_is_degraded_during_an_outage(
    live_factory: Any, tmp_path: Path
) -> None:
    # As on a new Render instance: the data dir does not exist, nothing local needs generating (keys come from
    # the environment), and the database is down from the start.
    fresh = tmp_path / "fresh" / "gateway-data"
    key = base64.b64encode(os.urandom(32)).decode()
    gw: Live = await live_factory(
        gateway_store="postgres", database_url=DEAD_DB, gateway_data_dir=fresh, gateway_encryption_keys=f"k1:{key}"
    )
    assert fresh.is_dir()
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
        r = await client.get("/readyz")
        assert r.status_code == 200
        assert r.json() == {"status": "degraded", "store": "unreachable", "ledger": "spooling"}
        events = await gw.chat(client, "q [[mock tokens=3]]")
    assert events[-1].data["type"] == "done"
    await gw.services.ledger.flush()
    assert (fresh / "ledger-spool.jsonl").exists()
