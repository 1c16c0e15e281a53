"""The pages served by the gateway itself: `/` (chat) and `/dashboard` (live spend), plain HTML/CSS/JS.

Every page and asset is read once at start-up and served from memory with strict security headers. In
development the pages carry the development token for a loopback visitor, so a newcomer can chat at once;
never in production.
"""

from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.deps import ServicesDep
from sessions.errors import fail

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
DEV_TOKEN_SLOT = "<!--dev-token-->"  # noqa: S105 (a placeholder in the page, not a secret)

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


def security_headers(request: Request) -> dict[str, str]:
    host = request.headers.get("host", "")
    # 'self' covers same-origin WebSockets in current browsers; the explicit ws(s) origin covers older ones.
    ws = f" ws://{host} wss://{host}" if host and all(c not in host for c in " ;,'\"") else ""
    csp = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self'{ws}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
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


def _page(name: str, request: Request, services: ServicesDep) -> Response:
    asset = ASSETS[name]
    client = request.client.host if request.client else ""
    token = services.dev_token if services.settings.is_dev and client in LOOPBACK else None
    meta = f'<meta name="gateway-dev-token" content="{html.escape(token)}">' if token else ""
    body = asset.body.replace(DEV_TOKEN_SLOT.encode(), meta.encode(), 1)
    headers = security_headers(request)
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
