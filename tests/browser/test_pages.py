"""The chat page and the dashboard in headless Chromium, against a real gateway on loopback."""

from __future__ import annotations

import asyncio
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Locator, Page, expect

from gateway.auth import DEV_USER_ID
from tests.browser.proxy import drop_proxy
from tests.conftest import Live
from tests.support.clients import collect_sse, text_of, user_msg

OTHER_USER = "00000000-0000-4000-8000-0000000000d1"
OPERATOR = "00000000-0000-4000-8000-0000000000d2"

pytestmark = pytest.mark.browser

FAR = "far [[mock tokens=400 delay_ms=5 fail_after=60 only=mock]]"


async def reference(live: Live, base: str, tokens: int) -> str:
    """The mock's answer to this prompt, streamed without any fault, outside the browser."""
    async with httpx.AsyncClient(timeout=20) as c:
        events = await collect_sse(
            c,
            "POST",
            f"{live.url}/v1/chat/stream",
            headers=live.headers(),
            json={"model": "mock", "messages": user_msg(f"{base} [[mock tokens={tokens}]]")},
        )
    return text_of([e.data for e in events])


async def answer_text(answer: Locator) -> str:
    """The answer as the user reads it, without the fallback markers drawn into it."""
    text = await answer.locator(".text").text_content() or ""
    for mark in await answer.locator(".fallback-mark").all_text_contents():
        text = text.replace(mark, "", 1)
    return text


def at_least_words(n: int) -> re.Pattern[str]:
    return re.compile(rf"^\s*(\S+\s+){{{n}}}")


async def recorded(live: Live, stream_id: str, token: str | None = None) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as c, asyncio.timeout(15):
        while True:
            r = await c.get(f"{live.url}/v1/usage/streams", params={"limit": 50}, headers=live.headers(token))
            found = [row for row in r.json()["data"] if row["stream_id"] == stream_id]
            if found:
                return found[0]
            await asyncio.sleep(0.05)


def money(v: str | Decimal) -> str:
    return f"${Decimal(v):.6f}"


async def send(page: Page, prompt: str) -> Locator:
    before = await page.locator(".msg.assistant").count()
    await page.fill("#prompt", prompt)
    await page.press("#prompt", "Enter")
    answer = page.locator(".msg.assistant").nth(before)
    await answer.wait_for(state="attached")
    return answer


async def test_chat_page_streams_an_answer_shows_fallback_and_cost_and_stops(
    new_page: Any, live_factory: Any, artifacts: Path
) -> None:
    live: Live = await live_factory()
    csp: list[str] = []
    page = await new_page(f"{live.url}/", csp)
    await expect(page.locator("#who")).to_contain_text("development token")
    await page.locator("#model option[value=mock]").wait_for(state="attached")
    assert await page.locator("#model").input_value() == "mock"
    assert await page.locator("#fallbacks input[value=mock-backup]").is_checked()

    answer = await send(page, "Tell me about it [[mock tokens=30 delay_ms=15 fail_after=10 only=mock]]")
    await expect(answer).to_have_attribute("data-state", "done")
    assert await answer_text(answer) == await reference(live, "Tell me about it", 30)
    mark = answer.locator(".fallback-mark")
    await expect(mark).to_have_count(1)
    await expect(mark).to_contain_text("mock-backup")
    sid = await answer.get_attribute("data-stream-id")
    assert sid is not None
    row = await recorded(live, sid)
    await expect(answer.locator(".cost")).to_have_text(re.compile("^" + re.escape(money(row["cost_usd"]))))
    await expect(answer.locator(".meta")).to_contain_text("mock ✕ server_error → mock-backup")

    # a second turn carries the conversation and gets its own answer
    second = await send(page, "And then? [[mock tokens=6 delay_ms=5]]")
    await expect(second).to_have_attribute("data-state", "done")
    assert len((await answer_text(second)).split()) == 6
    await page.screenshot(path=str(artifacts / "chat.png"))

    # stop: the stream ends at once, and what was generated is billed
    third = await send(page, "Go on and on [[mock tokens=3000 delay_ms=10]]")
    await expect(third.locator(".text")).to_have_text(at_least_words(5))
    await page.click("#stop")
    await expect(third).to_have_attribute("data-state", "stopped")
    stopped = await recorded(live, await third.get_attribute("data-stream-id") or "")
    assert stopped["status"] == "cancelled" and 5 <= stopped["output_tokens"] < 3000
    await expect(third.locator(".cost")).to_have_text(re.compile("^" + re.escape(money(stopped["cost_usd"]))))
    assert csp == []


async def applied(live: Live, prompt: str) -> str:
    """The answer a client holds after applying every event of a stream (a `seam` drops the end of its text)."""
    async with httpx.AsyncClient(timeout=20) as c:
        events = await collect_sse(
            c,
            "POST",
            f"{live.url}/v1/chat/stream",
            headers=live.headers(),
            json={"model": "mock", "messages": user_msg(prompt)},
        )
    text = ""
    for e in events:
        if e.data["type"] == "delta":
            text += e.data["text"]
        elif e.data["type"] == "seam":
            assert len(text) == e.data["keep_chars"] + e.data["discard_chars"]
            text = text[: e.data["keep_chars"]]
    return text


async def test_chat_page_applies_a_seam_when_the_next_model_rewrites_the_answer(
    new_page: Any, live_factory: Any
) -> None:
    live: Live = await live_factory()
    page = await new_page(f"{live.url}/", [])
    await page.locator("#model option[value=mock]").wait_for(state="attached")
    prompt = "Tell me more [[mock tokens=14 delay_ms=10 fail_after=7 only=mock on_continue=rewrite]]"
    answer = await send(page, prompt)
    await expect(answer).to_have_attribute("data-state", "done")
    dropped = await answer.locator("del.seam-dropped").all_text_contents()
    shown = await answer_text(answer)
    for part in dropped:  # struck through, and not part of the answer
        shown = shown.replace(part, "", 1)
    expected = await applied(live, prompt)
    assert shown == expected and len(expected.split()) == 14
    # The first model wrote seven words; the next one started over and went its own way after the sixth: the
    # seventh is struck through, and the answer goes on from the sixth.
    original = (await reference(live, "Tell me more", 14)).split(" ")
    assert "".join(dropped) == " " + original[6]
    assert expected.split(" ")[:6] == original[:6] and expected.split(" ")[6] != original[6]
    await expect(answer.locator(".seam-mark")).to_have_count(1)


async def test_chat_page_shows_a_tool_call_and_the_conversation_goes_on(new_page: Any, live_factory: Any) -> None:
    live: Live = await live_factory()
    csp: list[str] = []
    page = await new_page(f"{live.url}/", csp)
    await page.locator("#model option[value=mock]").wait_for(state="attached")
    answer = await send(page, "Weather in Paris? [[mock tool=get_weather delay_ms=20]]")
    call = answer.locator(".tool-call")
    await expect(call).to_have_count(1)
    await expect(call.locator(".tool-name")).to_have_text("get_weather")
    await expect(answer).to_have_attribute("data-state", "done")
    # the arguments arrived in three pieces and read as one JSON object
    assert json.loads(await call.locator(".tool-args").inner_text()) == {"city": "Paris"}
    await expect(answer.locator(".meta")).to_contain_text("tool_calls")
    # the next turn is accepted with the call in the history
    second = await send(page, "Thanks [[mock tokens=4]]")
    await expect(second).to_have_attribute("data-state", "done")
    assert len((await answer_text(second)).split()) == 4
    assert csp == []


async def test_dashboard_updates_live_when_a_stream_finishes_elsewhere(
    new_page: Any, live_factory: Any, artifacts: Path
) -> None:
    live: Live = await live_factory()
    cap = Decimal("0.02")
    await live.services.store.set_budget(DEV_USER_ID, cap, None)
    async with httpx.AsyncClient(timeout=30) as client:
        history = [
            await collect_sse(
                client,
                "POST",
                f"{live.url}/v1/chat/stream",
                headers=live.headers(),
                json={"model": "mock", "messages": user_msg(p)},
            )
            for p in ("one [[mock tokens=12]]", "two [[mock tokens=30 fail_after=9 only=mock]]")
        ]
        for events in history:
            await recorded(live, events[0].data["stream_id"])
        csp: list[str] = []
        page = await new_page(f"{live.url}/dashboard", csp)
        navigations: list[str] = []
        page.on("framenavigated", lambda f: navigations.append(f.url))
        await expect(page.locator("#live")).to_have_attribute("data-state", "live")
        await expect(page.locator("#recent tr[data-stream-id]")).to_have_count(2)
        await expect(page.locator("#c-streams")).to_have_text("2")
        before = sum(Decimal(ev[-1].data["cost_usd"]) for ev in history)
        await expect(page.locator("#c-cost")).to_have_text(money(before))
        await expect(page.locator("#c-budget")).to_have_text(f"${cap - before:.4f}")

        # A stream from another client (not this page): it shows up running, then settled.
        task = asyncio.create_task(
            collect_sse(
                client,
                "POST",
                f"{live.url}/v1/chat/stream",
                headers=live.headers(),
                json={"model": "mock", "messages": user_msg(FAR)},
            )
        )
        await expect(page.locator("#recent tr[data-running]")).to_have_count(1)
        await expect(page.locator("#c-running")).to_have_text(re.compile(r"^\$"))
        events = await task
    sid = events[0].data["stream_id"]
    cost = Decimal(events[-1].data["cost_usd"])
    row = page.locator(f'#recent tr[data-stream-id="{sid}"]')
    await expect(row).to_have_count(1)
    await expect(page.locator("#recent tr[data-running]")).to_have_count(0)
    await expect(row.locator(".seg")).to_have_count(2)
    await expect(row.locator('.seg[data-status="failed"]')).to_contain_text("mock ✕ server_error")
    await expect(row.locator('.seg[data-status="ok"]')).to_contain_text("mock-backup")
    await expect(page.locator("#c-streams")).to_have_text("3")
    await expect(page.locator("#c-cost")).to_have_text(money(before + cost))
    await expect(page.locator("#c-budget")).to_have_text(f"${cap - before - cost:.4f}")
    await expect(page.locator("#c-budget-sub")).to_contain_text("daily cap")
    await expect(page.locator('#by-model tr[data-model="mock-backup"]')).to_have_count(1)
    await expect(page.locator("#chart svg rect.bar")).not_to_have_count(0)
    assert navigations == [], "the dashboard reloaded instead of updating live"
    # the numbers it drew live are the server's numbers
    await page.reload()
    await expect(page.locator("#c-streams")).to_have_text("3")
    await expect(page.locator("#c-cost")).to_have_text(money(before + cost))
    await expect(page.locator(f'#recent tr[data-stream-id="{sid}"] .seg')).to_have_count(2)
    await page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)
    assert csp == []


async def test_dashboard_all_users_switch_for_a_service_role_token(new_page: Any, live_factory: Any) -> None:
    live: Live = await live_factory()
    other = live.services.auth.mint_dev_token(user_id=OTHER_USER)
    service = live.services.auth.mint_dev_token(user_id=OPERATOR, role="service_role")
    async with httpx.AsyncClient(timeout=30) as client:
        for token, prompt in ((None, "mine [[mock tokens=5]]"), (other, "theirs [[mock tokens=7]]")):
            events = await live.chat(client, prompt, token)
            await recorded(live, events[0].data["stream_id"], token)
        csp: list[str] = []
        page = await new_page(f"{live.url}/dashboard", csp)
        # a user's token: their own spend, and no switch
        await expect(page.locator("#c-streams")).to_have_text("1")
        await expect(page.locator("#all-users-field")).to_be_hidden()
        # the operator signs in with a service-role token: the switch shows; by default their own (none)
        await page.click("#who")  # the account dialog, where a token can be pasted
        await page.fill("#token", service)
        await page.press("#token", "Enter")
        await expect(page.locator("#all-users-field")).to_be_visible()
        await expect(page.locator("#c-streams")).to_have_text("0")
        await page.check("#all-users")
        await expect(page.locator("#c-streams")).to_have_text("2")
        await expect(page.locator(f'#recent tr[data-user-id="{OTHER_USER}"]')).to_have_count(1)
        await expect(page.locator("#live")).to_have_attribute("data-state", "live")
        # and the live feed now carries everyone's streams
        events = await live.chat(client, "more [[mock tokens=3]]", other)
        await expect(page.locator("#c-streams")).to_have_text("3")
        await expect(page.locator(f'#recent tr[data-stream-id="{events[0].data["stream_id"]}"]')).to_have_count(1)
    assert csp == []


async def test_eventsource_resume_after_forced_disconnects_shows_no_duplicate_text(
    new_page: Any, live_factory: Any
) -> None:
    live: Live = await live_factory()
    expected = await reference(live, "Resume me", 200)
    csp: list[str] = []
    async with drop_proxy(live.url) as proxy:
        page = await new_page(f"{proxy.url}/", csp)
        await page.locator("#model option[value=mock]").wait_for(state="attached")
        await page.check('input[name="transport"][value="sse"]')
        answer = await send(page, "Resume me [[mock tokens=200 delay_ms=30]]")
        await expect(answer.locator(".text")).to_have_text(at_least_words(5))
        assert proxy.drop_all() >= 1  # cuts the streaming fetch: the page resumes over EventSource
        await expect(answer.locator(".text")).to_have_text(at_least_words(40), timeout=30_000)
        resumes = [line for line in proxy.request_lines if "/events?" in line]
        assert resumes, proxy.request_lines
        assert proxy.drop_all() >= 1  # cuts the EventSource itself: the page takes a new ticket and resumes
        await expect(answer).to_have_attribute("data-state", "done", timeout=30_000)
    text = await answer_text(answer)
    assert text == expected, "resumed text differs from the uninterrupted answer (gap or duplicate)"
    resumes = [line for line in proxy.request_lines if "/events?" in line]
    assert len(resumes) >= 2, resumes
    afters = [int(re.search(r"after=(\d+)", line).group(1)) for line in resumes]  # type: ignore[union-attr]
    assert all(a > 0 for a in afters) and afters == sorted(afters)
    assert all("ticket=tk_" in line for line in resumes)
    await expect(answer.locator(".cost")).to_have_text(re.compile(r"^\$0\.\d{6}"))
    assert csp == []


async def test_websocket_resume_after_a_forced_disconnect(new_page: Any, live_factory: Any) -> None:
    live: Live = await live_factory()
    expected = await reference(live, "Keep going", 120)
    csp: list[str] = []
    async with drop_proxy(live.url) as proxy:
        page = await new_page(f"{proxy.url}/", csp)
        await page.locator("#model option[value=mock]").wait_for(state="attached")
        answer = await send(page, "Keep going [[mock tokens=120 delay_ms=30]]")
        await expect(answer.locator(".text")).to_have_text(at_least_words(5))
        assert proxy.drop_all() >= 1
        await expect(answer).to_have_attribute("data-state", "done", timeout=30_000)
    assert await answer_text(answer) == expected
    sockets = [line for line in proxy.request_lines if line.startswith("GET /v1/ws")]
    assert len(sockets) >= 2, proxy.request_lines
    assert csp == []
