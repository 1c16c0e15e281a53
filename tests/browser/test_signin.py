"""Signing in on the pages with Supabase Auth (a local stand-in for its REST endpoints, issuing ES256 tokens from
the JWKS the gateway trusts): email and password, a magic link, the session refreshed before it expires and
handed to an open WebSocket, signing out; and a token the gateway refuses, which says why and is forgotten."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from playwright.async_api import Page, expect

from tests.browser.test_pages import answer_text, send
from tests.conftest import Live
from tests.support.supabase_auth import ANON_KEY, SupabaseAuth, supabase_auth

pytestmark = pytest.mark.browser

EMAIL = "ada@example.com"
PASSWORD = "correct horse battery staple"


@pytest.fixture
async def auth() -> AsyncIterator[SupabaseAuth]:
    async with supabase_auth() as a:
        a.add_user(EMAIL, PASSWORD)
        yield a


def production(auth: SupabaseAuth, **extra: Any) -> dict[str, Any]:
    """A production gateway (no development token anywhere) trusting the stand-in's project."""
    return {
        "gateway_env": "production",
        "gateway_dev_signing_key": None,
        "supabase_url": auth.url,
        "supabase_anon_key": ANON_KEY,
        "gateway_encryption_keys": "k1:" + base64.b64encode(os.urandom(32)).decode(),
        **extra,
    }


async def stored_session(page: Page) -> Any:
    return await page.evaluate("JSON.parse(localStorage.getItem('gateway.session') || 'null')")


async def sign_in_with_password(page: Page, email: str = EMAIL, password: str = PASSWORD) -> None:
    dialog = page.locator("#account")
    if not await dialog.is_visible():
        await page.click("#who")
    await page.fill("#email", email)
    await page.fill("#password", password)
    await page.click("#password-signin")


async def until(predicate: Any, timeout: float = 15) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


async def test_password_sign_in_refreshes_the_session_before_it_expires_and_signs_out(
    new_page: Any, live_factory: Any
) -> None:
    # Short-lived tokens (8 s), so the refresh (a quarter of the lifetime before expiry) happens during the test.
    async with supabase_auth(access_ttl_s=8) as auth:
        auth.add_user(EMAIL, PASSWORD)
        live: Live = await live_factory(**production(auth))
        csp: list[str] = []
        page = await new_page(f"{live.url}/", csp)
        sockets: list[str] = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        # Nobody signed in: the pill says so and the sign-in dialog is open.
        await expect(page.locator("#account")).to_be_visible()
        await expect(page.locator("#conn")).to_have_attribute("data-state", "signed-out")

        await sign_in_with_password(page, password="wrong")
        await expect(page.locator("#auth-status")).to_contain_text("Invalid login credentials (invalid_credentials)")
        assert await stored_session(page) is None

        await sign_in_with_password(page)
        await expect(page.locator("#account")).to_be_hidden()
        await expect(page.locator("#who")).to_have_text(EMAIL)
        first = await stored_session(page)
        assert first["kind"] == "supabase" and first["email"] == EMAIL
        assert jwt.get_unverified_header(first["access_token"])["alg"] == "ES256"
        assert await page.input_value("#password") == ""

        await page.locator("#model option[value=mock]").wait_for(state="attached")
        answer = await send(page, "Hello [[mock tokens=5 delay_ms=5]]")
        await expect(answer).to_have_attribute("data-state", "done")
        assert len((await answer_text(answer)).split()) == 5

        # Refreshed before it expires; the open WebSocket is handed the new token, so it outlives the first one.
        await until(lambda: "refresh_token" in auth.grants)
        await until(lambda: auth.grants.count("refresh_token") >= 1)
        second = await stored_session(page)
        assert second["access_token"] != first["access_token"] and second["refresh_token"] != first["refresh_token"]
        await asyncio.sleep(max(0.0, first["expires_at"] - time.time() + 1.5))
        again = await send(page, "Still there? [[mock tokens=4 delay_ms=5]]")
        await expect(again).to_have_attribute("data-state", "done")
        assert len(sockets) == 1, sockets
        await expect(page.locator("#conn")).to_have_attribute("data-state", "connected")

        # Signing out ends the session at Auth too, and nothing of it survives a reload.
        await page.click("#who")
        await page.click("#signout")
        await until(lambda: auth.logouts == 1)
        await expect(page.locator("#who")).to_have_text("Sign in")
        await expect(page.locator("#conn")).to_have_attribute("data-state", "signed-out")
        assert await stored_session(page) is None
        await page.reload()
        await expect(page.locator("#account")).to_be_visible()
        await expect(page.locator("#models-error")).to_contain_text("Sign in")
    assert csp == []


async def test_magic_link_signs_in_from_the_email(new_page: Any, live_factory: Any, auth: SupabaseAuth) -> None:
    live: Live = await live_factory(**production(auth))
    csp: list[str] = []
    page = await new_page(f"{live.url}/dashboard", csp)
    await expect(page.locator("#account")).to_be_visible()
    await page.click("#magic-link")
    await expect(page.locator("#auth-status")).to_contain_text("Enter your email")
    await page.fill("#email", "grace@example.com")
    await page.click("#magic-link")
    await expect(page.locator("#auth-status")).to_contain_text("Check your inbox")
    assert [m.email for m in auth.outbox] == ["grace@example.com"]
    link = auth.outbox[0].link
    assert parse_qs(urlsplit(link).query)["redirect_to"] == [f"{live.url}/dashboard"]

    # The link goes to Auth, which sends the browser back with the session in the URL fragment.
    await page.goto(link)
    await expect(page.locator("#who")).to_have_text("grace@example.com")
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    assert "access_token" not in page.url and urlsplit(page.url).fragment == ""
    session = await stored_session(page)
    assert session["kind"] == "supabase" and session["refresh_token"]
    await expect(page.locator("#c-streams")).to_have_text("0")

    # A link used twice: Auth says why, and the page says it.
    await page.goto(link)
    await expect(page.locator("#auth-notice")).to_contain_text("otp_expired")
    await expect(page.locator("#auth-notice")).to_contain_text("invalid or has expired")
    assert csp == []


async def test_a_refused_token_says_why_and_is_forgotten(new_page: Any, live_factory: Any) -> None:
    # In development: the page starts on the development token; a pasted token the gateway refuses is dropped
    # with its reason, and the page goes back to the development token, also after a reload.
    live: Live = await live_factory()
    csp: list[str] = []
    page = await new_page(f"{live.url}/", csp)
    await expect(page.locator("#who")).to_contain_text("development token")
    forged = jwt.encode(
        {
            "sub": "00000000-0000-4000-8000-0000000000e1",
            "role": "authenticated",
            "aud": "authenticated",
            "iss": "gateway-dev",
            "exp": int(time.time()) + 600,
        },
        "not-the-gateway-key-0123456789abcdef0123456789",
        algorithm="HS256",
    )
    await page.click("#who")
    await page.fill("#token", forged)
    await page.press("#token", "Enter")
    notice = page.locator("#auth-notice")
    await expect(notice).to_be_visible()
    await expect(notice).to_contain_text("invalid_signature")
    await expect(notice).to_contain_text("signature does not verify")
    await expect(page.locator("#who")).to_contain_text("development token")
    assert await stored_session(page) is None
    await page.reload()
    await expect(page.locator("#who")).to_contain_text("development token")
    await expect(page.locator("#account")).to_be_hidden()
    await page.locator("#model option[value=mock]").wait_for(state="attached")
    assert csp == []


async def test_in_production_an_expired_token_is_refused_with_its_code(
    new_page: Any, live_factory: Any, auth: SupabaseAuth
) -> None:
    live: Live = await live_factory(**production(auth))
    csp: list[str] = []
    page = await new_page(f"{live.url}/dashboard", csp)
    expired = auth.idp.sign(exp=int(time.time()) - 120, iat=int(time.time()) - 3720)
    await page.click("#token-box summary")
    await page.fill("#token", expired)
    await page.press("#token", "Enter")
    await expect(page.locator("#auth-notice")).to_contain_text("token_expired")
    await expect(page.locator("#who")).to_have_text("Sign in")
    await expect(page.locator("#live")).to_have_attribute("data-state", "signed-out")
    assert await stored_session(page) is None
    await page.reload()
    await expect(page.locator("#who")).to_have_text("Sign in")
    await expect(page.locator("#auth-notice")).to_be_hidden()
    assert re.search(
        r"connect-src[^;]*" + re.escape(auth.url),
        (await page.context.request.get(live.url)).headers["content-security-policy"],
    )
    assert csp == []
