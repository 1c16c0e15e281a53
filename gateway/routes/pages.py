"""The pages served by the gateway itself: `/` (chat) and `/dashboard` (live spend), plain HTML/CSS/JS.

Every page and asset is read once at start-up and served from memory with strict security headers. In
development the pages carry the development token for a loopback visitor, so a newcomer can chat at once;
never in production. With `SUPABASE_URL` and `SUPABASE_ANON_KEY` set, the pages carry those two (both public)
and sign users in with Supabase Auth from their own script, so the CSP lets them reach that origin.
"""

from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.deps import ServicesDep
from sessions.errors import fail

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
DEV_TOKEN_SLOT = "<!--dev-token-->"  # noqa: S105 (a placeholder in the page, not a secret)
AUTH_CONFIG_SLOT = "<!--auth-config-->"

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}

router = APIRouter(tags=["pages"], include_in_schema=False)


@dataclass(slots=True, frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def _load() -> dict[str, Asset]:
    assets: dict[str, Asset] = {}
    for path in sorted(STATIC_DIR.iterdir()):
        media = _TYPES.get(path.suffix)
        if media is None or not path.is_file():
            continue
        body = path.read_bytes()
        assets[path.name] = Asset(body, media, '"' + hashlib.sha256(body).hexdigest()[:20] + '"')
    return assets


ASSETS = _load()


def _safe(value: str) -> bool:
    return bool(value) and all(c not in value for c in " ;,'\"")


def origin_of(url: str | None) -> str | None:
    """`scheme://host[:port]` of an http(s) URL, for the CSP; None for anything else."""
    if not url:
        return None
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}"
    return origin if parts.scheme in ("http", "https") and _safe(parts.netloc) else None


def security_headers(request: Request, auth_origin: str | None = None) -> dict[str, str]:
    host = request.headers.get("host", "")
    # 'self' covers same-origin WebSockets in current browsers; the explicit ws(s) origin covers older ones.
    ws = f" ws://{host} wss://{host}" if _safe(host) else ""
    auth = f" {auth_origin}" if auth_origin else ""
    csp = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self'{ws}{auth}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return {
        "content-security-policy": csp,
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
        "referrer-policy": "no-referrer",
        "cross-origin-opener-policy": "same-origin",
        "cross-origin-resource-policy": "same-origin",
        "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=()",
    }


def _meta(name: str, value: str) -> str:
    return f'<meta name="{name}" content="{html.escape(value)}">'


def _page(name: str, request: Request, services: ServicesDep) -> Response:
    asset = ASSETS[name]
    settings = services.settings
    client = request.client.host if request.client else ""
    token = services.dev_token if settings.is_dev and client in LOOPBACK else None
    dev = _meta("gateway-dev-token", token) if token else ""
    # Sign-in on the page needs both; the anon key is public by design (it only identifies the project).
    auth_origin = origin_of(settings.supabase_url) if settings.supabase_anon_key else None
    auth = ""
    if auth_origin and settings.supabase_url and settings.supabase_anon_key:
        auth = _meta("gateway-supabase-url", settings.supabase_url) + _meta(
            "gateway-supabase-anon-key", settings.supabase_anon_key
        )
    body = asset.body.replace(DEV_TOKEN_SLOT.encode(), dev.encode(), 1).replace(
        AUTH_CONFIG_SLOT.encode(), auth.encode(), 1
    )
    headers = security_headers(request, auth_origin)
    headers["cache-control"] = "no-store"  # the page may carry a token
    return Response(body, media_type=asset.media_type, headers=headers)


@router.get("/")
async def chat_page(request: Request, services: ServicesDep) -> Response:
    return _page("chat.html", request, services)


@router.get("/dashboard")
async def dashboard_page(request: Request, services: ServicesDep) -> Response:
    return _page("dashboard.html", request, services)


@router.get("/static/{name}")
async def static_asset(name: str, request: Request) -> Response:
    asset = ASSETS.get(name)
    if asset is None or name.endswith(".html"):
        raise fail("not_found", "no such file")
    headers = security_headers(request)
    headers["etag"] = asset.etag
    headers["cache-control"] = "no-cache"  # revalidate: cheap with the ETag, and never a stale script
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)
