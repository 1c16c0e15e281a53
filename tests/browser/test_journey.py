"""A new user's whole way, in production mode: sign in with Supabase Auth (the local stand-in), add an OpenAI
key on the chat page, chat with that model (the emulated upstream gets the key), stop it, and read the
dashboard on a phone and on a desktop, with nothing wider than the screen."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import expect

from tests.browser.conftest import assert_no_horizontal_overflow
from tests.browser.test_keys import page_keeps, save_key
from tests.browser.test_pages import at_least_words, recorded, send
from tests.browser.test_signin import EMAIL, PASSWORD, production, sign_in_with_password
from tests.conftest import Live
from tests.emulators import Emulator, Script
from tests.support.supabase_auth import SupabaseAuth, supabase_auth

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")]

KEY = "sk-proj-journey-0000000000000000000000000000042"


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator() as e:
        yield e


@pytest.fixture
async def auth() -> AsyncIterator[SupabaseAuth]:
    async with supabase_auth() as a:
        a.add_user(EMAIL, PASSWORD)
        yield a


async def test_sign_in_add_a_key_chat_stop_and_read_the_dashboard_on_any_screen(
    new_page: Any, live_factory: Any, auth: SupabaseAuth, emu: Emulator
) -> None:
    live: Live = await live_factory(**production(auth, openai_base_url=emu.openai_base_url))
    emu.default(Script(text=tuple(f" word{i}" for i in range(2000)), delay=0.01))
    csp: list[str] = []
    page = await new_page(f"{live.url}/", csp, width=390, height=800)
    await sign_in_with_password(page)
    await expect(page.locator("#who")).to_have_text(EMAIL)
    await assert_no_horizontal_overflow(page)

    await page.click("#keys > summary")
    await save_key(page, "openai", KEY)
    await expect(page.locator('#key-list li[data-provider="openai"]')).to_have_attribute("data-has-key", "true")
    await expect(page.locator("#model option[value=gpt-5-mini]")).to_be_enabled()
    assert await page_keeps(page, KEY) == []

    await page.click("#settings > summary")
    await page.select_option("#model", "gpt-5-mini")
    await page.click("#settings > summary")
    answer = await send(page, "Tell me everything")
    await expect(answer.locator(".text")).to_have_text(at_least_words(10))
    await expect(page.locator("#conn")).to_have_attribute("data-state", "streaming")
    await page.click("#stop")
    await expect(answer).to_have_attribute("data-state", "stopped")
    assert emu.last.key_suffix == KEY[-4:] and emu.last.model == "gpt-5-mini"
    token = await page.evaluate("JSON.parse(localStorage.getItem('gateway.session')).access_token")
    row = await recorded(live, await answer.get_attribute("data-stream-id") or "", token)
    assert row["status"] == "cancelled" and row["segments"][0]["model"] == "gpt-5-mini"
    await expect(answer.locator(".cost")).to_have_text(re.compile(r"^\$\d"))
    await assert_no_horizontal_overflow(page)

    await page.goto(f"{live.url}/dashboard")
    for width in (390, 1280):
        dash = page
        await dash.set_viewport_size({"width": width, "height": 800})
        await expect(dash.locator("#who")).to_have_text(EMAIL)  # the same session as on the chat page
        await expect(dash.locator("#live")).to_have_attribute("data-state", "live")
        recent = dash.locator(f'#recent tr[data-stream-id="{row["stream_id"]}"]')
        await expect(recent.locator('td[data-label="Answered by"]')).to_have_text("gpt-5-mini")
        await expect(recent.locator(".status")).to_have_text("cancelled")
        await assert_no_horizontal_overflow(dash)
    assert csp == []
