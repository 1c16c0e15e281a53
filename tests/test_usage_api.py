"""GET /v1/usage and /v1/usage/streams: aggregates over a known set of streams, and who may see what."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from gateway.auth import DEV_USER_ID
from providers.events import Usage
from providers.segments import Segment
from sessions.records import StreamRecord
from tests.conftest import Live

OTHER = "00000000-0000-4000-8000-0000000000c3"


async def stream(client: httpx.AsyncClient, live: Live, prompt: str, token: str | None = None) -> dict[str, Any]:
    events = await live.chat(client, prompt, token)
    assert events[-1].event == "done", events[-1]
    return events[-1].data


async def wait_recorded(client: httpx.AsyncClient, live: Live, token: str, n: int) -> list[dict[str, Any]]:
    """The ledger writes in batches: wait until the user's n streams are readable."""
    async with asyncio.timeout(15):
        while True:
            r = await client.get(f"{live.url}/v1/usage/streams", params={"limit": 50}, headers=live.headers(token))
            assert r.status_code == 200, r.text
            rows: list[dict[str, Any]] = r.json()["data"]
            if len(rows) >= n:
                return rows
            await asyncio.sleep(0.05)


def old_record(stream_id: str, user: str, day: datetime, model: str, out: int, cost: str) -> StreamRecord:
    seg = Segment(1, model, "mock", usage=Usage(10, out), cost_usd=Decimal(cost))
    return StreamRecord(stream_id, user, None, model, "done", "stop", None, day, day + timedelta(seconds=1), [seg])


async def test_aggregates_match_a_known_set_of_streams(live: Live) -> None:
    other = live.services.auth.mint_dev_token(user_id=OTHER)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    # Two streams on earlier days (written straight to the ledger's store), so days and ranges are exercised.
    await live.services.store.write_streams(
        [
            old_record("st_old1", DEV_USER_ID, today - timedelta(days=3, hours=-2), "mock", 100, "0.000300"),
            old_record("st_old2", DEV_USER_ID, today - timedelta(days=40), "mock-backup", 50, "0.000150"),
            old_record("st_oldb", OTHER, today - timedelta(days=3, hours=-5), "mock", 70, "0.000900"),
        ]
    )
    async with httpx.AsyncClient(timeout=20) as client:
        dones = [
            await stream(client, live, "a [[mock tokens=5]]"),
            await stream(client, live, "b [[mock tokens=7]]"),
            await stream(client, live, "c [[mock tokens=6 fail_after=3 only=mock]]"),
        ]
        await stream(client, live, "d [[mock tokens=4]]", other)
        mine = await wait_recorded(client, live, live.token, 5)
        await wait_recorded(client, live, other, 2)

        r = await client.get(
            f"{live.url}/v1/usage",
            params={"from": (today - timedelta(days=6)).date().isoformat(), "to": today.date().isoformat()},
            headers=live.headers(),
        )
        assert r.status_code == 200, r.text
        body = r.json()
        default = (await client.get(f"{live.url}/v1/usage", headers=live.headers())).json()
        wide = (
            await client.get(
                f"{live.url}/v1/usage",
                params={"from": (today - timedelta(days=60)).date().isoformat()},
                headers=live.headers(),
            )
        ).json()

    # -- expected, from what the streams themselves reported
    today_cost = sum((Decimal(d["cost_usd"]) for d in dones), Decimal(0))
    today_in = sum(d["usage"]["input_tokens"] for d in dones)
    today_out = sum(d["usage"]["output_tokens"] for d in dones)
    per_model: dict[str, Decimal] = defaultdict(Decimal)
    for d in dones:
        for s in d["segments"]:
            per_model[s["model"]] += Decimal(s["cost_usd"])
    per_model["mock"] += Decimal("0.000300")

    assert body["user_id"] == DEV_USER_ID
    assert len(body["by_day"]) == 7 and body["by_day"][-1]["day"] == today.date().isoformat()
    t = body["totals"]
    assert t["streams"] == 4 and t["segments"] == 5
    assert Decimal(t["cost_usd"]) == today_cost + Decimal("0.000300")
    assert t["input_tokens"] == today_in + 10 and t["output_tokens"] == today_out + 100
    days = {d["day"]: d for d in body["by_day"]}
    assert Decimal(days[today.date().isoformat()]["cost_usd"]) == today_cost
    assert days[today.date().isoformat()]["streams"] == 3
    three_ago = days[(today - timedelta(days=3)).date().isoformat()]
    assert (three_ago["streams"], three_ago["output_tokens"], three_ago["cost_usd"]) == (1, 100, "0.000300")
    assert sum(d["streams"] for d in body["by_day"]) == 4  # the other days are zeros
    assert {m["model"]: Decimal(m["cost_usd"]) for m in body["by_model"]} == dict(per_model)
    costs = [Decimal(m["cost_usd"]) for m in body["by_model"]]
    assert costs == sorted(costs, reverse=True)
    # the fallback stream counts towards both models it used
    assert {m["model"]: m["streams"] for m in body["by_model"]} == {"mock": 4, "mock-backup": 1}
    assert [(p["provider"], Decimal(p["cost_usd"])) for p in body["by_provider"]] == [("mock", Decimal(t["cost_usd"]))]
    assert body["budget"]["remaining_usd"] is None and body["budget"]["daily_usd"] is None
    assert Decimal(body["budget"]["spent_today_usd"]) == today_cost

    assert len(default["by_day"]) == 30 and default["totals"] == t
    assert wide["totals"]["streams"] == 5  # the 40-day-old stream is in the wider range only

    # -- recent streams: newest first, segments and fallbacks visible, nobody else's
    assert [r["stream_id"] for r in mine] == [d["stream_id"] for d in reversed(dones)] + ["st_old1", "st_old2"]
    assert all(r["user_id"] == DEV_USER_ID for r in mine)
    starts = [r["started_at"] for r in mine]
    assert starts == sorted(starts, reverse=True)
    fell_back = mine[0]
    assert fell_back["fallbacks"] == 1
    assert [(s["model"], s["status"]) for s in fell_back["segments"]] == [("mock", "failed"), ("mock-backup", "ok")]
    assert fell_back["cost_usd"] == dones[2]["cost_usd"]


async def test_a_user_never_sees_another_users_spend(live: Live) -> None:
    other = live.services.auth.mint_dev_token(user_id=OTHER)
    service = live.services.auth.mint_dev_token(user_id=OTHER, role="service_role")
    async with httpx.AsyncClient(timeout=20) as client:
        mine = await stream(client, live, "mine [[mock tokens=3]]")
        theirs = await stream(client, live, "theirs [[mock tokens=9]]", other)
        await wait_recorded(client, live, live.token, 1)
        await wait_recorded(client, live, other, 1)
        get = client.get
        u = f"{live.url}/v1/usage"
        me = (await get(u, headers=live.headers())).json()
        them = (await get(u, headers=live.headers(other))).json()
        for path in ("/v1/usage", "/v1/usage/streams", "/v1/usage/stream"):
            for who in (OTHER, "*"):
                r = await get(f"{live.url}{path}", params={"user_id": who}, headers=live.headers())
                assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", (path, who)
        own = await get(u, params={"user_id": DEV_USER_ID}, headers=live.headers())
        as_service = (await get(u, params={"user_id": DEV_USER_ID}, headers=live.headers(service))).json()
        everyone = (await get(u, params={"user_id": "*"}, headers=live.headers(service))).json()
        their_rows = (await get(f"{u}/streams", headers=live.headers(other))).json()["data"]
        unauth = await get(u)
    assert me["totals"]["cost_usd"] == mine["cost_usd"] and me["totals"]["streams"] == 1
    assert them["totals"]["cost_usd"] == theirs["cost_usd"] and them["totals"]["output_tokens"] == 9
    assert own.status_code == 200 and own.json()["totals"] == me["totals"]
    assert as_service["totals"] == me["totals"] and as_service["user_id"] == DEV_USER_ID
    assert everyone["user_id"] is None and everyone["budget"] is None
    assert Decimal(everyone["totals"]["cost_usd"]) == Decimal(mine["cost_usd"]) + Decimal(theirs["cost_usd"])
    assert [r["user_id"] for r in their_rows] == [OTHER]
    assert unauth.status_code == 401


async def test_budget_remaining_and_bad_ranges(live: Live) -> None:
    await live.services.store.set_budget(DEV_USER_ID, Decimal("0.50"), Decimal("0.40"))
    async with httpx.AsyncClient(timeout=20) as client:
        done = await stream(client, live, "spend [[mock tokens=20]]")
        await wait_recorded(client, live, live.token, 1)
        body = (await client.get(f"{live.url}/v1/usage", headers=live.headers())).json()
        bad = [
            await client.get(f"{live.url}/v1/usage", params=p, headers=live.headers())
            for p in ({"from": "2025-02-10", "to": "2025-02-01"}, {"from": "2020-01-01", "to": "2025-01-01"})
        ]
        garbled = await client.get(f"{live.url}/v1/usage", params={"from": "yesterday"}, headers=live.headers())
    b = body["budget"]
    assert (b["daily_usd"], b["monthly_usd"]) == ("0.50", "0.40")
    assert Decimal(b["spent_today_usd"]) == Decimal(done["cost_usd"]) == Decimal(b["spent_month_usd"])
    assert Decimal(b["remaining_usd"]) == Decimal("0.40") - Decimal(done["cost_usd"])  # the tighter cap
    for r in (*bad, garbled):
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


async def test_a_stream_is_readable_as_soon_as_it_is_done(live: Live) -> None:
    """Read your writes: the ledger batches, but the usage API never lags behind the `done` a client saw."""
    async with httpx.AsyncClient(timeout=30) as client:
        for n in (1, 2):
            done = await stream(client, live, f"answer {n} [[mock tokens=5]]")
            r = await client.get(f"{live.url}/v1/usage/streams", headers=live.headers())
            assert [row["stream_id"] for row in r.json()["data"]][:1] == [done["stream_id"]]
            r = await client.get(f"{live.url}/v1/usage", headers=live.headers())
            assert r.json()["totals"]["streams"] == n
            both = (await client.get(f"{live.url}/v1/usage?recent=5", headers=live.headers())).json()
            assert both["totals"]["streams"] == len(both["recent"]) == n
    assert live.services.ledger.backlog == 0
