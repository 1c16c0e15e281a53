"""Spend caps: the guard's arithmetic and cache, and end to end: a cap crossed mid-stream stops the stream
with `budget_exceeded` and bills the partial output; a user over the cap cannot start another stream."""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from gateway.auth import DEV_USER_ID
from gateway.budgets import StoreBudgetGuard, period_starts
from gateway.stores.base import Budget, Spend
from gateway.stores.sqlite import SQLiteStore
from sessions.allowance import Allowances
from tests.conftest import Live
from tests.support.clients import collect_sse, user_msg
from tests.support.records import new_user, record

NOW = datetime(2031, 7, 15, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0
        self.now = NOW

    def mono(self) -> float:
        return self.t

    def wall(self) -> datetime:
        return self.now


def sid() -> str:
    return "st_" + secrets.token_hex(6)


def cost(c: str) -> list[tuple[str, str, int, int, str]]:
    return [("mock", "mock", 1, 1, c)]


async def make_guard(tmp_path: Path, ttl_s: float = 10.0) -> tuple[SQLiteStore, StoreBudgetGuard, Clock]:
    store = SQLiteStore(tmp_path / "db.sqlite3")
    await store.open()
    clock = Clock()
    return store, StoreBudgetGuard(store, ttl_s=ttl_s, clock=clock.mono, now=clock.wall), clock


def test_period_starts_are_utc_day_and_month() -> None:
    day, month = period_starts(datetime(2031, 7, 15, 23, 59, tzinfo=UTC) + timedelta(hours=2))
    assert day == datetime(2031, 7, 16, tzinfo=UTC) and month == datetime(2031, 7, 1, tzinfo=UTC)


async def test_no_budget_means_no_cap(tmp_path: Path) -> None:
    store, guard, _ = await make_guard(tmp_path)
    try:
        assert await guard.remaining_usd(new_user()) is None
    finally:
        await store.aclose()


async def test_remaining_is_the_tighter_of_the_two_caps(tmp_path: Path) -> None:
    store, guard, _ = await make_guard(tmp_path)
    user = new_user()
    try:
        await store.write_streams(
            [
                record(sid(), user, NOW - timedelta(days=3), cost("4")),  # this month, not today
                record(sid(), user, NOW - timedelta(hours=1), cost("0.5")),  # today
                record(sid(), user, NOW - timedelta(days=40), cost("100")),  # last month
            ]
        )
        await store.set_budget(user, Decimal("2"), Decimal("10"))
        assert await guard.remaining_usd(user) == Decimal("1.5")  # daily: 2 - 0.5
        await store.set_budget(user, Decimal("20"), Decimal("5"))
        guard.forget(user)
        assert await guard.remaining_usd(user) == Decimal("0.5")  # monthly: 5 - 4.5
        await store.set_budget(user, None, None)
        guard.forget(user)
        assert await guard.remaining_usd(user) is None
    finally:
        await store.aclose()


async def test_the_ledger_keeps_the_cached_spend_current_without_queries(tmp_path: Path) -> None:
    store, guard, _ = await make_guard(tmp_path, ttl_s=3600)
    user = new_user()
    try:
        await store.set_budget(user, Decimal("1"), None)
        assert await guard.remaining_usd(user) == Decimal("1")
        r1 = record(sid(), user, NOW, cost("0.25"))
        guard.submitted(r1)  # taken by the ledger, not yet in the database
        assert await guard.remaining_usd(user) == Decimal("0.75")
        await store.write_streams([r1])
        guard.written([r1])
        assert await guard.remaining_usd(user) == Decimal("0.75")  # not counted twice
        # Records of users not cached yet are remembered until the database has them.
        other = new_user()
        await store.set_budget(other, Decimal("1"), None)
        guard.submitted(record(sid(), other, NOW, cost("0.4")))
        assert await guard.remaining_usd(other) == Decimal("0.6")
    finally:
        await store.aclose()


class CountingStore(SQLiteStore):
    """The real SQLite store, counting the budget lookups the guard makes."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.spend_queries = 0
        self.budget_queries = 0

    async def budget(self, user_id: str) -> Budget | None:
        self.budget_queries += 1
        await asyncio.sleep(0.01)  # a lookup takes a moment: the burst below arrives while it runs
        return await super().budget(user_id)

    async def user_spend(self, user_id: str, day_start: datetime, month_start: datetime) -> Spend:
        self.spend_queries += 1
        return await super().user_spend(user_id, day_start, month_start)


async def test_a_burst_of_starts_shares_one_lookup_and_no_cap_needs_no_spend_query(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "db.sqlite3")
    await store.open()
    clock = Clock()
    guard = StoreBudgetGuard(store, ttl_s=10, clock=clock.mono, now=clock.wall)
    capped, free = new_user(), new_user()
    try:
        await store.set_budget(capped, Decimal("1"), None)
        await store.write_streams([record(sid(), capped, NOW, cost("0.25")), record(sid(), free, NOW, cost("0.5"))])
        for _ in range(2):  # cold, then again once the cache expired
            clock.t += 11
            store.budget_queries = store.spend_queries = 0
            got = await asyncio.gather(*(guard.remaining_usd(u) for u in [capped] * 20 + [free] * 20))
            assert got == [Decimal("0.75")] * 20 + [None] * 20
            assert store.budget_queries == 2  # one per user, not one per start
            assert store.spend_queries == 1  # only the user with a cap needs the month's spend
        # Asking for the figures (the usage API) does load the spend of a user without a cap.
        status = await guard.status(free)
        assert status is not None and status.today_usd == Decimal("0.5") and status.remaining_usd is None
    finally:
        await store.aclose()


async def test_a_new_day_resets_the_daily_cap(tmp_path: Path) -> None:
    store, guard, clock = await make_guard(tmp_path, ttl_s=3600)
    user = new_user()
    try:
        await store.set_budget(user, Decimal("1"), None)
        await store.write_streams([record(sid(), user, NOW, cost("1"))])
        assert await guard.remaining_usd(user) == Decimal("0")
        clock.now = NOW + timedelta(days=1)
        assert await guard.remaining_usd(user) == Decimal("1")
    finally:
        await store.aclose()


async def test_an_unreachable_store_fails_open_but_keeps_what_it_knew(tmp_path: Path) -> None:
    store, guard, clock = await make_guard(tmp_path, ttl_s=1)
    user = new_user()
    await store.set_budget(user, Decimal("1"), None)
    assert await guard.remaining_usd(user) == Decimal("1")
    await store.aclose()  # from now on every query raises StoreUnavailable
    clock.t = 100
    assert await guard.remaining_usd(user) == Decimal("1")  # stale, but still today's
    assert await guard.remaining_usd(new_user()) is None  # nothing known: do not block streams


# -- end to end ------------------------------------------------------------------------------------------


async def set_budget(live: Live, http: httpx.AsyncClient, daily: str | None, monthly: str | None = None) -> Any:
    r = await http.put("/v1/budget", json={"daily_usd": daily, "monthly_usd": monthly}, headers=live.headers())
    assert r.status_code == 200, r.text
    return r.json()


async def test_budget_api(live: Live) -> None:
    async with httpx.AsyncClient(base_url=live.url, timeout=20) as http:
        r = await http.get("/v1/budget", headers=live.headers())
        assert r.json() == {
            "daily_usd": None,
            "monthly_usd": None,
            "today_usd": "0",
            "month_usd": "0",
            "remaining_usd": None,
        }
        body = await set_budget(live, http, "2.5", "40")
        assert (body["daily_usd"], body["monthly_usd"], body["remaining_usd"]) == ("2.5", "40", "2.5")
        bad = await http.put("/v1/budget", json={"daily_usd": -1}, headers=live.headers())
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"
        bad = await http.put("/v1/budget", json={"weekly_usd": 1}, headers=live.headers())
        assert bad.status_code == 422
        assert (await http.get("/v1/budget")).status_code == 401


async def test_a_cap_crossed_mid_stream_stops_it_and_bills_the_partial_output(live: Live) -> None:
    # mock costs $2 per million output tokens: $0.0002 is reached after about 100 of the 3000 tokens.
    prompt = "tell me everything [[mock tokens=3000 delay_ms=1]]"
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as http:
        await set_budget(live, http, "0.0002")
        sse = await collect_sse(
            http,
            "POST",
            "/v1/chat/stream",
            json={"model": "mock", "messages": user_msg(prompt)},
            headers=live.headers(),
        )
        events = [e.data for e in sse]
        last = events[-1]
        assert last["type"] == "error" and last["code"] == "budget_exceeded" and last["retryable"] is False
        deltas = sum(1 for e in events if e["type"] == "delta")
        assert 0 < deltas < 3000

        await live.services.ledger.flush()
        [row] = await live.services.store.recent_streams(DEV_USER_ID, 1)
        assert row.status == "budget_exceeded" and row.error_code == "budget_exceeded"
        assert 0 < row.output_tokens < 3000 and row.cost_usd > 0
        assert row.segments and row.segments[0].status == "cancelled"

        # Now over the cap: the next stream does not start.
        r = await http.post(
            "/v1/chat/stream", json={"model": "mock", "messages": user_msg("again")}, headers=live.headers()
        )
        assert r.status_code == 402 and r.json()["error"]["code"] == "budget_exceeded"
        status = (await http.get("/v1/budget", headers=live.headers())).json()
        assert Decimal(status["remaining_usd"]) <= 0 and Decimal(status["today_usd"]) == row.cost_usd

        # Over WebSocket the refusal is an error event.
        async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=live.headers()) as ws:
            await ws.send(json.dumps({"type": "chat.start", "id": "b1", "model": "mock", "messages": user_msg("x")}))
            async with asyncio.timeout(10):
                while True:
                    frame = json.loads(await ws.recv())
                    if frame.get("type") == "error":
                        break
            assert frame["code"] == "budget_exceeded" and frame["id"] == "b1"

        # Raising the cap lets the user stream again.
        await set_budget(live, http, "1")
        sse = await collect_sse(
            http,
            "POST",
            "/v1/chat/stream",
            json={"model": "mock", "messages": user_msg("short [[mock tokens=3]]")},
            headers=live.headers(),
        )
        assert sse[-1].data["type"] == "done"


@pytest.mark.parametrize("delay_ms", [0])
async def test_the_cap_also_holds_when_the_upstream_never_pauses(live: Live, delay_ms: int) -> None:
    # With no delay the mock never yields to the event loop between tokens; the stop must still happen.
    prompt = f"go [[mock tokens=3000 delay_ms={delay_ms}]]"
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as http:
        await set_budget(live, http, "0.0002")
        sse = await collect_sse(
            http,
            "POST",
            "/v1/chat/stream",
            json={"model": "mock", "messages": user_msg(prompt)},
            headers=live.headers(),
        )
        events = [e.data for e in sse]
        assert events[-1]["type"] == "error" and events[-1]["code"] == "budget_exceeded"
        assert sum(1 for e in events if e["type"] == "delta") < 3000


async def test_parallel_streams_share_one_cap(live: Live) -> None:
    """Each stream alone stays under the cap; together they cross it, so they are stopped together."""
    # 240 mock words are ~360 tokens by the running estimate, ~$0.00072 at the mock's $2 per million: under
    # the $0.001 cap alone, well over it as a pair.
    prompt = "side by side [[mock tokens=240 delay_ms=1]]"
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as http:
        await set_budget(live, http, "0.001")
        runs = await asyncio.gather(
            *(
                collect_sse(
                    http,
                    "POST",
                    "/v1/chat/stream",
                    json={"model": "mock", "messages": user_msg(prompt)},
                    headers=live.headers(),
                )
                for _ in range(2)
            )
        )
        ends = [run[-1].data for run in runs]
        assert any(e["type"] == "error" and e["code"] == "budget_exceeded" for e in ends), ends
        await live.services.ledger.flush()
        rows = await live.services.store.recent_streams(DEV_USER_ID, 2)
        # Both were billed; together they overshoot by at most one check interval (16 words) each and the input.
        assert len(rows) == 2 and all(r.cost_usd > 0 for r in rows)
        assert sum(r.cost_usd for r in rows) < Decimal("0.001") + Decimal("0.00015")
    assert len(live.services.sessions._allowances) == 0  # nothing left behind once the streams ended


def test_allowances_are_shared_per_user_and_released() -> None:
    allowances = Allowances()
    a = allowances.share("u1", Decimal("1.0"))
    b = allowances.share("u1", Decimal("1.0"))
    other = allowances.share("u2", Decimal("1.0"))
    assert not a.over("s1", Decimal("0.4"))
    assert not other.over("s3", Decimal("0.9"))  # another user's spend is not counted
    assert b.over("s2", Decimal("0.6"))  # 0.4 + 0.6 reaches the cap
    a.finished("s1", Decimal("0.5"))
    assert not b.over("s2", Decimal("0.45"))  # 0.5 finished + 0.45 running
    late = allowances.share("u1", Decimal("0.5"))  # started after s1 finished: its remainder already counts it
    assert not late.over("s4", Decimal("0.04"))  # 0.45 + 0.04 of 0.5
    assert late.over("s4", Decimal("0.05"))
    for user in ("u1", "u1", "u1", "u2"):
        allowances.release(user)
    assert len(allowances) == 0
