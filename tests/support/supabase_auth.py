"""A local stand-in for Supabase Auth's REST endpoints (the ones a browser page signs in with), on a loopback
port, issuing ES256 access tokens from the JWKS it also serves, the one the gateway trusts.

    POST /auth/v1/token?grant_type=password       {"email", "password"}      -> a session
    POST /auth/v1/token?grant_type=refresh_token  {"refresh_token"}          -> a new session (the old refresh
                                                                                token is spent)
    POST /auth/v1/otp?redirect_to=<url>           {"email", "create_user"}   -> {} (the "email" lands in `outbox`)
    GET  /auth/v1/verify?token=&type=magiclink&redirect_to=                  -> 303 to redirect_to#access_token=…
    GET  /auth/v1/user                            Bearer <access token>      -> the user
    POST /auth/v1/logout                          Bearer <access token>      -> 204, the session's refresh
                                                                                tokens revoked
    GET  /auth/v1/.well-known/jwks.json

Every call needs the project's `apikey` header (as Supabase's API gateway demands); answers carry CORS headers
so a page on another origin can call them. Errors have Auth's shape: `{"code", "error_code", "msg"}`.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import jwt
from aiohttp import web

from tests.support.jwks import IdentityProvider, add_jwks_route
from tests.support.server import free_port

ANON_KEY = "sb_publishable_test-stand-in-anon-key"


@dataclass
class AuthUser:
    id: str
    email: str
    password: str | None


@dataclass
class Sent:
    """A magic-link email the stand-in "sent"."""

    email: str
    link: str


@dataclass
class SupabaseAuth:
    idp: IdentityProvider
    access_ttl_s: int = 3600
    anon_key: str = ANON_KEY
    users: dict[str, AuthUser] = field(default_factory=dict)  # by email
    outbox: list[Sent] = field(default_factory=list)
    grants: list[str] = field(default_factory=list)  # grant types served, in order
    logouts: int = 0
    _refresh: dict[str, tuple[AuthUser, str]] = field(default_factory=dict)  # token -> (user, session id)
    _spent: set[str] = field(default_factory=set)
    _otps: dict[str, tuple[AuthUser, str]] = field(default_factory=dict)  # token -> (user, redirect_to)

    @property
    def url(self) -> str:
        """The project URL, as `SUPABASE_URL` names it."""
        return self.idp.url

    def add_user(self, email: str, password: str | None = None) -> AuthUser:
        user = AuthUser(str(uuid.uuid4()), email, password)
        self.users[email] = user
        return user

    # -- sessions -----------------------------------------------------------------------

    def _user_json(self, user: AuthUser) -> dict[str, Any]:
        return {"id": user.id, "aud": "authenticated", "role": "authenticated", "email": user.email}

    def _session(self, user: AuthUser, session_id: str | None = None) -> dict[str, Any]:
        session_id = session_id or str(uuid.uuid4())
        now = int(time.time())
        token = self.idp.sign(
            sub=user.id, email=user.email, session_id=session_id, iat=now, exp=now + self.access_ttl_s
        )
        refresh = secrets.token_urlsafe(16)
        self._refresh[refresh] = (user, session_id)
        return {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": self.access_ttl_s,
            "expires_at": now + self.access_ttl_s,
            "refresh_token": refresh,
            "user": self._user_json(user),
        }

    def _verified_user(self, request: web.Request) -> tuple[AuthUser, dict[str, Any]] | None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            return None
        try:
            claims = jwt.decode(
                header[7:],
                self.idp.current.private.public_key(),
                algorithms=["ES256"],
                audience="authenticated",
                issuer=self.idp.issuer,
            )
        except jwt.PyJWTError:
            return None
        user = next((u for u in self.users.values() if u.id == claims.get("sub")), None)
        return (user, claims) if user is not None else None

    # -- handlers -------------------------------------------------------------------------

    async def token(self, request: web.Request) -> web.Response:
        grant = request.query.get("grant_type", "")
        body = await request.json()
        if grant == "password":
            user = self.users.get(str(body.get("email", "")))
            if user is None or user.password is None or user.password != body.get("password"):
                return error(400, "invalid_credentials", "Invalid login credentials")
            self.grants.append(grant)
            return web.json_response(self._session(user))
        if grant == "refresh_token":
            token = str(body.get("refresh_token", ""))
            if token in self._spent:
                return error(400, "refresh_token_already_used", "Invalid Refresh Token: Already Used")
            found = self._refresh.pop(token, None)
            if found is None:
                return error(400, "refresh_token_not_found", "Invalid Refresh Token: Refresh Token Not Found")
            self._spent.add(token)
            self.grants.append(grant)
            return web.json_response(self._session(found[0], found[1]))
        return error(400, "validation_failed", f"unsupported grant_type {grant!r}")

    async def otp(self, request: web.Request) -> web.Response:
        body = await request.json()
        email = str(body.get("email", ""))
        if "@" not in email:
            return error(400, "validation_failed", "Unable to validate email address: invalid format")
        user = self.users.get(email)
        if user is None:
            if body.get("create_user") is False:
                return error(422, "otp_disabled", "Signups not allowed for otp")
            user = self.add_user(email)
        token = secrets.token_urlsafe(16)
        redirect_to = request.query.get("redirect_to", "")
        self._otps[token] = (user, redirect_to)
        query = urlencode({"token": token, "type": "magiclink", "redirect_to": redirect_to})
        self.outbox.append(Sent(email, f"{self.url}/auth/v1/verify?{query}"))
        return web.json_response({})

    async def verify(self, request: web.Request) -> web.Response:
        found = self._otps.pop(request.query.get("token", ""), None)
        redirect_to = request.query.get("redirect_to", "")
        if found is None:
            fragment = urlencode(
                {
                    "error": "access_denied",
                    "error_code": "otp_expired",
                    "error_description": "Email link is invalid or has expired",
                }
            )
            return see_other(f"{redirect_to}#{fragment}")
        user, redirect_to = found
        session = self._session(user)
        self.grants.append("magiclink")
        fragment = urlencode(
            {
                "access_token": session["access_token"],
                "expires_at": session["expires_at"],
                "expires_in": session["expires_in"],
                "refresh_token": session["refresh_token"],
                "token_type": "bearer",
                "type": "magiclink",
            }
        )
        return see_other(f"{redirect_to}#{fragment}")

    async def user(self, request: web.Request) -> web.Response:
        found = self._verified_user(request)
        if found is None:
            return error(403, "bad_jwt", "invalid JWT: unable to parse or verify signature")
        return web.json_response(self._user_json(found[0]))

    async def logout(self, request: web.Request) -> web.Response:
        found = self._verified_user(request)
        if found is None:
            return error(403, "bad_jwt", "invalid JWT: unable to parse or verify signature")
        session_id = found[1].get("session_id")
        for token, (_, sid) in list(self._refresh.items()):
            if sid == session_id:
                del self._refresh[token]
        self.logouts += 1
        return web.Response(status=204)


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"location": location})


def error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": status, "error_code": code, "msg": message}, status=status)


AUTH = web.AppKey("auth", SupabaseAuth)
CORS = {
    "access-control-allow-origin": "*",
    "access-control-allow-methods": "GET, POST, PUT, DELETE, OPTIONS",
    "access-control-allow-headers": "apikey, authorization, content-type, x-client-info",
    "access-control-max-age": "600",
}


@web.middleware
async def _edge(request: web.Request, handler: Any) -> web.StreamResponse:
    """What Supabase's API gateway does in front of Auth: CORS, and no call without the project's apikey."""
    auth = request.app[AUTH]
    if request.method == "OPTIONS":
        return web.Response(status=204, headers=CORS)
    browser_navigation = request.path.endswith("/verify")  # the link in the email carries no header
    public = browser_navigation or request.path.endswith("jwks.json")
    if not public and request.headers.get("apikey") != auth.anon_key:
        response: web.StreamResponse = web.json_response({"message": "No API key found in request"}, status=401)
    else:
        response = await handler(request)
    response.headers.update(CORS)
    return response


@asynccontextmanager
async def supabase_auth(*, access_ttl_s: int = 3600) -> AsyncIterator[SupabaseAuth]:
    idp = IdentityProvider(free_port())
    idp.add_key("ES256")
    auth = SupabaseAuth(idp, access_ttl_s=access_ttl_s)
    app = web.Application(middlewares=[_edge])
    app[AUTH] = auth
    add_jwks_route(app, idp)
    app.router.add_post("/auth/v1/token", auth.token)
    app.router.add_post("/auth/v1/otp", auth.otp)
    app.router.add_get("/auth/v1/verify", auth.verify)
    app.router.add_get("/auth/v1/user", auth.user)
    app.router.add_post("/auth/v1/logout", auth.logout)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", idp.port).start()
    try:
        yield auth
    finally:
        await runner.cleanup()
