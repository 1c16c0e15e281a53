"""Headless Chromium (Debian's /usr/bin/chromium) driven by Playwright, one browser per test module."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import service_unavailable

# Debian's chromium (no browser download works here); GATEWAY_TEST_CHROMIUM points at another build.
CHROMIUM = os.environ.get("GATEWAY_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        service_unavailable("chromium")
    try:
        from playwright.async_api import Error as PlaywrightError
        from playwright.async_api import async_playwright
    except ImportError:
        service_unavailable("chromium (the playwright package)")
        raise
    async with async_playwright() as p:
        try:
            b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except PlaywrightError as exc:
            service_unavailable(f"chromium ({exc.message.splitlines()[0]})")
            raise
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
async def new_page(browser: Any, live_factory: Any) -> AsyncIterator[Any]:
    """Open pages in a fresh browser context; closed before the test's gateways stop (their live
    connections would otherwise hold up the servers' shutdown)."""
    contexts: list[Any] = []

    async def open_page(url: str, csp_errors: list[str], width: int = 1280, height: int = 860) -> Any:
        ctx = await browser.new_context(viewport={"width": width, "height": height})
        contexts.append(ctx)
        page = await ctx.new_page()
        page.set_default_timeout(20_000)
        # Our pages run under a strict CSP: any violation (an inline style or script) is a bug.
        page.on("console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None)
        page.on("pageerror", lambda e: csp_errors.append(f"page error: {e} {e.stack}"))
        await page.goto(url)
        return page

    try:
        yield open_page
    finally:
        for ctx in contexts:
            await ctx.close()


async def assert_no_horizontal_overflow(page: Any) -> None:
    """Nothing sticks out sideways: the document is no wider than the window (no horizontal scroll)."""
    width, inner = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= inner, f"{page.url} is {width} px wide in a {inner} px window"
