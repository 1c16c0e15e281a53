"""The dashboard shows prompt-cache reads and writes: loaded from `GET /v1/usage`, and added live as a stream
served through the Messages API with cache markers settles."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from anthropic import AsyncAnthropic
from playwright.async_api import expect

from tests.browser.conftest import assert_no_horizontal_overflow
from tests.conftest import Live
from tests.emulators import Emulator, Script
from tests.test_providers_gateway import emulated

pytestmark = pytest.mark.browser


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator() as e:
        yield e


async def cached_answer(live: Live, emu: Emulator, read: int, written: int) -> str:
    emu.script(Script(input_tokens=9000, cached_tokens=read, cache_creation_tokens=written), model="claude-sonnet-4-5")
    system: Any = [{"type": "text", "text": "The handbook. " * 100, "cache_control": {"type": "ephemeral"}}]
    async with AsyncAnthropic(base_url=live.url, api_key=live.token, max_retries=0, timeout=20) as sdk:
        msg = await sdk.messages.create(
            model="claude-sonnet-4-5",
            max_tokens=100,
            system=system,
            messages=[{"role": "user", "content": "Summarise."}],
            extra_body={"fallbacks": []},
        )
    stream_id: str = msg.model_extra["gateway"]["stream_id"]  # type: ignore[index]
    async with httpx.AsyncClient(base_url=live.url, headers=live.headers(), timeout=10) as c:
        for _ in range(100):  # the ledger settles it for GET /v1/usage
            rows = (await c.get("/v1/usage/streams")).json()["data"]
            if any(r["stream_id"] == stream_id for r in rows):
                break
    return stream_id


async def test_cache_reads_and_writes_on_the_dashboard(new_page: Any, live_factory: Any, emu: Emulator) -> None:
    live: Live = await live_factory(**emulated(emu))
    await cached_answer(live, emu, read=4000, written=1500)
    csp: list[str] = []
    page = await new_page(f"{live.url}/dashboard", csp)
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    await expect(page.locator("#c-cache")).to_have_text("prompt cache: 4,000 read · 1,500 written")
    row = page.locator('#by-model tr[data-model="claude-sonnet-4-5"] td.cache')
    await expect(row).to_have_text("4,000 / 1,500")
    await expect(page.locator('#by-provider tr[data-provider="anthropic"] td.cache')).to_have_text("4,000 / 1,500")

    # Another one settles while the page is open: the numbers move without a reload.
    await cached_answer(live, emu, read=2000, written=500)
    await expect(page.locator("#c-cache")).to_have_text("prompt cache: 6,000 read · 2,000 written")
    await expect(row).to_have_text("6,000 / 2,000")
    await page.reload()
    await expect(page.locator("#c-cache")).to_have_text("prompt cache: 6,000 read · 2,000 written")

    phone = await new_page(f"{live.url}/dashboard", csp, width=390, height=844)
    await expect(phone.locator("#c-cache")).to_have_text("prompt cache: 6,000 read · 2,000 written")
    await assert_no_horizontal_overflow(phone)
    assert csp == []
