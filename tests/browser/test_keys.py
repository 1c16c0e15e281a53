"""The "Your keys" panel: add, replace and remove a provider key through /v1/keys; the model list follows at
once, the key reaches the provider (the emulator), and nothing of it stays in the page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.browser.test_pages import answer_text, send
from tests.conftest import Live
from tests.emulators import Emulator, Script

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")]

FIRST = "sk-proj-first-key-0000000000000000000000000001"
SECOND = "sk-proj-second-key-000000000000000000000000002"


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator() as e:
        yield e


async def page_keeps(page: Page, secret: str) -> list[str]:
    """Where in the page a secret can still be found: the DOM (values included), and web storage."""
    found = await page.evaluate(
        """(secret) => {
          const where = [];
          if (document.documentElement.outerHTML.includes(secret)) where.push("html");
          for (const i of document.querySelectorAll("input, textarea")) {
            if (i.value.includes(secret)) where.push("#" + i.id);
          }
          for (const s of [localStorage, sessionStorage]) {
            for (let k = 0; k < s.length; k++) {
              if ((s.getItem(s.key(k)) || "").includes(secret)) where.push("storage " + s.key(k));
            }
          }
          return where;
        }""",
        secret,
    )
    return list(found)


async def save_key(page: Page, provider: str, key: str) -> None:
    row = page.locator(f'#key-list li[data-provider="{provider}"]')
    await row.locator("input").fill(key)
    await row.locator("input").press("Enter")


async def test_keys_panel_adds_replaces_and_removes_a_key_and_the_models_follow(
    new_page: Any, live_factory: Any, emu: Emulator
) -> None:
    live: Live = await live_factory(openai_base_url=emu.openai_base_url)
    emu.default(Script(text="Hello from your own key."))
    csp: list[str] = []
    page = await new_page(f"{live.url}/#keys", csp)  # the dashboard's "Your keys" link lands here
    await expect(page.locator("#keys")).to_have_attribute("open", "")
    row = page.locator('#key-list li[data-provider="openai"]')
    await expect(row).to_have_attribute("data-has-key", "false")
    await expect(row).to_contain_text("no key")
    for provider in ("anthropic", "gemini"):
        await expect(page.locator(f'#key-list li[data-provider="{provider}"]')).to_have_count(1)
    await expect(page.locator('#key-list li[data-provider="mock"]')).to_have_count(0)
    option = page.locator("#model option[value=gpt-5-mini]")
    await expect(option).to_be_disabled()
    await expect(option).to_contain_text("(no key)")

    await save_key(page, "openai", FIRST)
    assert await row.locator("input").input_value() == ""
    await expect(row).to_have_attribute("data-has-key", "true")
    async with httpx.AsyncClient(base_url=live.url) as client:
        stored = (await client.get("/v1/keys/openai", headers=live.headers())).json()
    await expect(row.locator(".key-hint")).to_have_text("your key " + stored["hint"])
    assert stored["hint"].endswith(FIRST[-4:])
    await expect(option).to_be_enabled()  # at once, no reload
    await expect(option).not_to_contain_text("no key")
    assert await page_keeps(page, FIRST) == []

    await page.select_option("#model", "gpt-5-mini")
    answer = await send(page, "Say hello")
    await expect(answer).to_have_attribute("data-state", "done")
    assert await answer_text(answer) == "Hello from your own key."
    assert emu.last.key_suffix == FIRST[-4:]

    # Replace it: the new hint, and the provider sees the new key.
    await save_key(page, "openai", SECOND)
    await expect(row.locator(".key-hint")).to_contain_text(SECOND[-4:])
    again = await send(page, "Again")
    await expect(again).to_have_attribute("data-state", "done")
    assert emu.last.key_suffix == SECOND[-4:]
    assert await page_keeps(page, SECOND) == []

    # Remove it: the model is unavailable again.
    await row.locator('button[data-action="delete"]').click()
    await expect(row).to_have_attribute("data-has-key", "false")
    await expect(option).to_be_disabled()
    async with httpx.AsyncClient(base_url=live.url) as client:
        assert (await client.get("/v1/keys", headers=live.headers())).json()["data"] == []
    assert csp == []


async def test_a_refused_key_says_why_and_keeps_nothing(new_page: Any, live_factory: Any) -> None:
    live: Live = await live_factory()
    csp: list[str] = []
    page = await new_page(f"{live.url}/dashboard", csp)
    await page.click("a[href='/#keys']")
    await expect(page.locator("#keys")).to_have_attribute("open", "")
    row = page.locator('#key-list li[data-provider="anthropic"]')
    await save_key(page, "anthropic", "sk-ant with a space in it")
    await expect(row.locator(".key-error")).to_contain_text("invalid_request")
    await expect(row).to_have_attribute("data-has-key", "false")
    assert await page_keeps(page, "with a space") == []
    assert csp == []
