"""Both pages on a phone, a tablet and a desktop: nothing wider than the window, the composer in view, controls
big enough for a finger on narrow screens. Takes the screenshots the README shows (tests/artifacts/screens/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import assert_no_horizontal_overflow
from tests.browser.test_pages import recorded, send
from tests.conftest import Live

pytestmark = pytest.mark.browser

NARROW = 860  # the pages' breakpoint: below it, a finger is assumed
TOUCH_PX = 44


async def assert_touch_targets(page: Page, selectors: list[str]) -> None:
    for selector in selectors:
        for el in await page.locator(selector).all():
            if not await el.is_visible():
                continue
            box = await el.bounding_box()
            assert box is not None and box["height"] >= TOUCH_PX - 0.5, f"{selector} is {box} on {page.url}"


async def assert_in_view(page: Page, selector: str) -> None:
    box = await page.locator(selector).bounding_box()
    size = page.viewport_size
    assert box is not None and size is not None
    assert box["y"] >= 0 and box["y"] + box["height"] <= size["height"] + 0.5, f"{selector} at {box} in {size}"
    assert box["x"] >= 0 and box["x"] + box["width"] <= size["width"] + 0.5, f"{selector} at {box} in {size}"


async def history(live: Live) -> None:
    """A few streams for the dashboard: a plain one, one that fell back mid-answer, a longer one."""
    async with httpx.AsyncClient(timeout=30) as client:
        for prompt in (
            "Plan a trip [[mock tokens=40]]",
            "Summarise this [[mock tokens=60 fail_after=20 only=mock]]",
            "Write a poem [[mock tokens=120]]",
        ):
            events = await live.chat(client, prompt)
            await recorded(live, events[0].data["stream_id"])


@pytest.mark.parametrize("width", [360, 390, 768, 1280])
async def test_both_pages_fit_the_screen(new_page: Any, live_factory: Any, artifacts: Path, width: int) -> None:
    live: Live = await live_factory()
    await history(live)
    shots = artifacts / "screens"
    shots.mkdir(exist_ok=True)
    narrow = width < NARROW
    csp: list[str] = []

    page = await new_page(f"{live.url}/", csp, width=width, height=800 if narrow else 860)
    await page.locator("#model option[value=mock]").wait_for(state="attached")
    # On a phone or a tablet the settings start folded, naming the chain; the conversation gets the screen.
    if narrow:
        await expect(page.locator("#settings")).not_to_have_attribute("open", "")
        await expect(page.locator("#settings-summary")).to_have_text("mock → mock-backup")
    else:
        await expect(page.locator("#settings")).to_have_attribute("open", "")
    await assert_no_horizontal_overflow(page)
    await assert_in_view(page, "#prompt")
    await assert_in_view(page, "#send")
    first = await send(page, "What can you do? [[mock tokens=24 delay_ms=5]]")
    await expect(first).to_have_attribute("data-state", "done")
    answer = await send(page, "Tell me about it [[mock tokens=70 delay_ms=5 fail_after=25 only=mock]]")
    await expect(answer).to_have_attribute("data-state", "done")
    await expect(answer.locator(".fallback-mark")).to_have_count(1)
    await assert_no_horizontal_overflow(page)
    await assert_in_view(page, "#prompt")
    await assert_in_view(page, "#stop")
    if narrow:
        await assert_touch_targets(page, ["#send", "#stop", "#who", ".topbar nav a", ".fold > summary"])
    await page.screenshot(path=str(shots / f"chat-{width}.png"))

    for fold in ("#settings", "#keys"):
        if await page.locator(fold).get_attribute("open") is None:
            await page.click(f"{fold} > summary")
        await assert_no_horizontal_overflow(page)
    if narrow:
        controls = ["#model", "#max-tokens", ".segmented label", "#key-list button", "#key-list input"]
        await assert_touch_targets(page, controls)
    await page.click("#who")
    await expect(page.locator("#account")).to_be_visible()
    await assert_in_view(page, "#account")
    await assert_no_horizontal_overflow(page)
    await page.click("#account-close")

    dash = await new_page(f"{live.url}/dashboard", csp, width=width, height=800 if narrow else 860)
    await expect(dash.locator("#live")).to_have_attribute("data-state", "live")
    await expect(dash.locator("#recent tr[data-stream-id]")).to_have_count(5)
    await expect(dash.locator("#chart svg rect.bar")).not_to_have_count(0)
    await assert_no_horizontal_overflow(dash)
    if narrow:
        await assert_touch_targets(dash, ["#who", ".topbar nav a", "#range", ".button-link", ".segmented label"])
    await dash.screenshot(path=str(shots / f"dashboard-{width}.png"), full_page=not narrow)
    assert csp == []
