"""The pages over plain HTTP: security headers, assets, and the development token only where it belongs."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path
from typing import Any

import httpx

from gateway.app import create_app
from tests.conftest import Live, make_settings
from tests.support.server import serve

DEV_META = re.compile(r'<meta name="gateway-dev-token" content="([^"]+)">')


def check_security_headers(h: httpx.Headers) -> None:
    csp = h["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self';" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert h["x-content-type-options"] == "nosniff"
    assert h["x-frame-options"] == "DENY"
    assert h["referrer-policy"] == "no-referrer"


async def test_pages_carry_security_headers_and_the_dev_token_in_development(live: Live) -> None:
    async with httpx.AsyncClient(base_url=live.url) as c:
        for path, title in (("/", "Chat"), ("/dashboard", "Spend")):
            r = await c.get(path)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
            assert f"<title>{title}" in r.text
            check_security_headers(r.headers)
            assert r.headers["cache-control"] == "no-store"
            m = DEV_META.search(r.text)
            assert m is not None and m.group(1) == live.token  # loopback visitor, development mode
            assert "<!--dev-token-->" not in r.text
        js = await c.get("/static/chat.js")
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        check_security_headers(js.headers)
        again = await c.get("/static/chat.js", headers={"if-none-match": js.headers["etag"]})
        assert again.status_code == 304
        for missing in ("/static/nope.js", "/static/chat.html", "/static/..%2Fapp.py"):
            r = await c.get(missing)
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


async def test_production_pages_never_carry_a_token(tmp_path: Path) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    overrides: dict[str, Any] = {
        "gateway_env": "production",
        "gateway_dev_signing_key": None,
        "supabase_url": "https://project-ref.supabase.co",
        "supabase_jwt_secret": "x" * 48,
        "gateway_encryption_keys": f"k1:{key}",
    }
    app = create_app(make_settings(tmp_path, **overrides))
    assert app.state.services.dev_token is None
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as c:
        for path in ("/", "/dashboard"):
            r = await c.get(path)
            assert r.status_code == 200
            assert "gateway-dev-token" not in r.text and "<!--dev-token-->" not in r.text
            check_security_headers(r.headers)


async def test_pages_carry_the_supabase_sign_in_config_and_allow_its_origin(live_factory: Any) -> None:
    # Both public by design: the project URL and its publishable (anon) key. Nothing else of the project.
    live: Live = await live_factory(
        supabase_url="https://project-ref.supabase.co",
        supabase_anon_key="sb_publishable_abc123",
        supabase_service_role_key="sb_secret_never-in-a-page",
    )
    async with httpx.AsyncClient(base_url=live.url) as c:
        for path in ("/", "/dashboard"):
            r = await c.get(path)
            assert '<meta name="gateway-supabase-url" content="https://project-ref.supabase.co">' in r.text
            assert '<meta name="gateway-supabase-anon-key" content="sb_publishable_abc123">' in r.text
            assert "<!--auth-config-->" not in r.text and "sb_secret" not in r.text
            check_security_headers(r.headers)
            connect = next(d for d in r.headers["content-security-policy"].split(";") if "connect-src" in d)
            assert connect.split()[1:3] == ["'self'", f"ws://{live.url.split('://')[1]}"]
            assert connect.split()[-1] == "https://project-ref.supabase.co"


async def test_without_an_anon_key_the_pages_have_no_sign_in_config(live: Live) -> None:
    async with httpx.AsyncClient(base_url=live.url) as c:
        r = await c.get("/")
    assert "gateway-supabase" not in r.text and "<!--auth-config-->" not in r.text
    assert "supabase" not in r.headers["content-security-policy"]
