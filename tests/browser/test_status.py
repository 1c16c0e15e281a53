"""The pages say what is true: the chat page's pill in every state (idle, connecting, streaming over WebSocket
or SSE, reconnecting, stopped, error), a stopped answer says "cancelled" once, the dashboard names the same
model for a stream while it runs and once it finished, and its range labels agree."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.browser.proxy import drop_proxy
from tests.browser.test_pages import at_least_words, send
from tests.conftest import Live
from tests.support.clients import user_msg

pytestmark = pytest.mark.browser

# Every state the pill takes, as it takes it (the observer runs outside the page's CSP, like devtools).
RECORD_STATES = """
() => {
  window.__states = [];
  const pill = document.getElementById("conn");
  const note = () => {
    const last = window.__states[window.__states.length - 1];
    const now = pill.dataset.state + ": " + pill.textContent;
    if (last !== now) window.__states.push(now);
  };
  note();
  new MutationObserver(note).observe(pill, { attributes: true, childList: true, characterData: true, subtree: true });
}
"""


async def states(page: Page) -> list[str]:
    return list(await page.evaluate("window.__states"))


async def open_chat(new_page: Any, url: str, csp: list[str]) -> Page:
    page: Page = await new_page(url, csp)
    await page.locator("#model option[value=mock]").wait_for(state="attached")
    await page.evaluate(RECORD_STATES)
    return page


async def test_the_pill_tells_idle_connecting_streaming_connected_stopped_and_error(
    new_page: Any, live_factory: Any
) -> None:
    live: Live = await live_factory()
    csp: list[str] = []
    page = await open_chat(new_page, f"{live.url}/", csp)
    pill = page.locator("#conn")
    # Signed in with nothing open yet: ready, not a red "not connected".
    await expect(pill).to_have_attribute("data-state", "idle")
    await expect(pill).to_have_text("Ready")

    answer = await send(page, "Hi [[mock tokens=40 delay_ms=20]]")
    await expect(answer).to_have_attribute("data-state", "done")
    await expect(pill).to_have_attribute("data-state", "connected")
    seen = await states(page)
    assert seen[:4] == [
        "idle: Ready",
        "connecting: Connecting… (WebSocket)",
        "streaming: Streaming · WebSocket",
        "connected: Connected · WebSocket",
    ], seen

    # Over SSE, the pill leaves "streaming" when the answer is done.
    await page.check('input[name="transport"][value="sse"]')
    await page.evaluate(RECORD_STATES)
    answer = await send(page, "Again [[mock tokens=20 delay_ms=20]]")
    await expect(answer).to_have_attribute("data-state", "done")
    assert "streaming: Streaming · SSE" in await states(page)
    await expect(pill).not_to_have_attribute("data-state", "streaming")

    # Stopped: the pill says so, and the answer says "cancelled" once.
    stopped = await send(page, "Long [[mock tokens=3000 delay_ms=10]]")
    await expect(stopped.locator(".text")).to_have_text(at_least_words(5))
    await page.click("#stop")
    await expect(stopped).to_have_attribute("data-state", "stopped")
    await expect(pill).to_have_attribute("data-state", "stopped")
    await expect(pill).to_have_text("Stopped")
    meta = await stopped.locator(".meta").inner_text()
    assert len(re.findall("cancelled", meta)) == 1, meta
    assert "✕" not in meta

    # An error: every model of the chain failed.
    await page.uncheck("#fallbacks input[value=mock-backup]")
    failed = await send(page, "Fail [[mock tokens=10 fail_after=0 only=mock]]")
    await expect(failed).to_have_attribute("data-state", "error")
    await expect(pill).to_have_attribute("data-state", "error")
    await expect(pill).to_contain_text("all_models_failed")
    # ...until the next answer starts.
    await page.check("#fallbacks input[value=mock-backup]")
    fine = await send(page, "Fine [[mock tokens=3]]")
    await expect(fine).to_have_attribute("data-state", "done")
    await expect(pill).not_to_have_attribute("data-state", "error")
    assert csp == []


async def test_the_pill_says_reconnecting_while_a_dropped_stream_resumes(new_page: Any, live_factory: Any) -> None:
    live: Live = await live_factory()
    csp: list[str] = []
    async with drop_proxy(live.url) as proxy:
        page = await open_chat(new_page, f"{proxy.url}/", csp)
        for transport, over in (("ws", "WebSocket"), ("sse", "SSE")):
            await page.check(f'input[name="transport"][value="{transport}"]')
            await page.evaluate(RECORD_STATES)
            answer = await send(page, f"Drop me [[mock tokens=120 delay_ms=20]] {transport}")
            await expect(answer.locator(".text")).to_have_text(at_least_words(5))
            assert proxy.drop_all() >= 1
            await expect(answer).to_have_attribute("data-state", "done", timeout=30_000)
            seen = await states(page)
            start = seen.index(f"streaming: Streaming · {over}")
            after = seen[start + 1 :]
            assert f"reconnecting: Reconnecting… ({over})" in after, seen
            back = after.index(f"reconnecting: Reconnecting… ({over})")
            assert f"streaming: Streaming · {over}" in after[back:], seen
    assert csp == []


async def test_dashboard_names_the_model_that_answered_while_running_and_after(
    new_page: Any, live_factory: Any
) -> None:
    live: Live = await live_factory()
    csp: list[str] = []
    page = await new_page(f"{live.url}/dashboard", csp)
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    async with httpx.AsyncClient(timeout=30) as client:
        # mock fails after 5 tokens; mock-backup answers the rest, slowly enough to be seen running.
        body = {"model": "mock", "messages": user_msg("switch [[mock tokens=200 delay_ms=15 fail_after=5 only=mock]]")}
        task = asyncio.create_task(
            client.post(f"{live.url}/v1/chat/stream", headers=live.headers(), json=body, timeout=30)
        )
        running = page.locator('#recent tr[data-running] td[data-label="Answered by"]')
        await expect(running).to_have_text("mock-backup")
        response = await task
    sid = response.headers["x-stream-id"]
    row = page.locator(f'#recent tr[data-stream-id="{sid}"]:not([data-running])')
    await expect(row.locator('td[data-label="Answered by"]')).to_have_text("mock-backup")
    await expect(row.locator('td[data-label="Answered by"]')).to_have_attribute("title", "asked for mock")
    await expect(page.locator("#recent tr[data-running]")).to_have_count(0)
    assert csp == []


async def test_dashboard_range_labels_agree(new_page: Any, live_factory: Any) -> None:
    live: Live = await live_factory()
    csp: list[str] = []
    page = await new_page(f"{live.url}/dashboard", csp)
    await expect(page.locator("#c-cost-sub")).to_have_text("last 7 days")
    await expect(page.locator("#scale-days")).to_have_text("Last 7 days, per day")
    await expect(page.locator("label:has(input[value=hour])")).to_have_text("Last hour, per minute")
    await page.select_option("#range", "30")
    await expect(page.locator("#c-cost-sub")).to_have_text("last 30 days")
    await expect(page.locator("#scale-days")).to_have_text("Last 30 days, per day")
    await page.check('input[name="scale"][value="days"]')
    await expect(page.locator("#chart-svg-title")).to_have_text("Cost and tokens by day, last 30 days")
    await page.check('input[name="scale"][value="hour"]')
    await expect(page.locator("#chart-svg-title")).to_have_text("Cost and tokens per minute, last hour")
    assert csp == []
