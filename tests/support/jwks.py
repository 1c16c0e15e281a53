"""A Supabase-shaped identity provider for tests: a JWKS endpoint on a loopback port and a token signer.

Serves `/auth/v1/.well-known/jwks.json` like a Supabase project does, counts fetches, and lets a test rotate,
add, withdraw and break keys while the gateway runs. Keys are real EC P-256 and RSA keys from `cryptography`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.support.server import free_port

LEGACY_SECRET = "legacy-project-jwt-secret-with-at-least-32-characters"


@dataclass
class SigningKey:
    kid: str
    alg: str  # ES256 or RS256
    private: Any

    def public_pem(self) -> bytes:
        return bytes(
            self.private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def jwk(self) -> dict[str, Any]:
        algo = ECAlgorithm if self.alg == "ES256" else RSAAlgorithm
        data: dict[str, Any] = algo.to_jwk(self.private.public_key(), as_dict=True)
        data.update(kid=self.kid, alg=self.alg, use="sig", key_ops=["verify"])
        return data


def new_key(alg: str = "ES256", kid: str | None = None) -> SigningKey:
    private: Any
    if alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif alg == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        raise ValueError(alg)
    return SigningKey(kid or f"{alg.lower()}-{uuid.uuid4().hex[:12]}", alg, private)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A token assembled by hand, for the forgeries a JWT library refuses to produce."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(signature)}"


def hs256_forgery(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """HS256 over the token with an arbitrary byte string as the secret (e.g. a public key's PEM)."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


@dataclass
class IdentityProvider:
    """The JWKS server plus helpers to mint Supabase-shaped access tokens."""

    port: int
    keys: dict[str, SigningKey] = field(default_factory=dict)
    published: list[str] = field(default_factory=list)
    fetches: int = 0
    fail_with: int | None = None  # answer fetches with this HTTP status
    delay_s: float = 0.0  # slow fetches, so concurrent callers overlap

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        return f"{self.url}/auth/v1"

    # -- keys -------------------------------------------------------------------

    def add_key(self, alg: str = "ES256", *, publish: bool = True) -> SigningKey:
        key = new_key(alg)
        self.keys[key.kid] = key
        if publish:
            self.published.append(key.kid)
        return key

    def rotate(self, alg: str = "ES256", *, keep_old: bool = True) -> SigningKey:
        """A new current key; the old ones stay published (as Supabase does for a while) unless told otherwise."""
        if not keep_old:
            self.published.clear()
        return self.add_key(alg)

    def withdraw(self, kid: str) -> None:
        self.published.remove(kid)

    @property
    def current(self) -> SigningKey:
        return self.keys[self.published[-1]]

    def document(self) -> dict[str, Any]:
        return {"keys": [self.keys[k].jwk() for k in self.published]}

    # -- tokens -----------------------------------------------------------------

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        base: dict[str, Any] = {
            "iss": self.issuer,
            "aud": "authenticated",
            "sub": str(uuid.uuid4()),
            "role": "authenticated",
            "exp": now + 3600,
            "iat": now,
            "email": "user@example.com",
            "phone": "",
            "aal": "aal1",
            "session_id": str(uuid.uuid4()),
            "is_anonymous": False,
        }
        base.update(overrides)
        return {k: v for k, v in base.items() if v is not None}

    def sign(self, claims: dict[str, Any] | None = None, *, key: SigningKey | None = None, **overrides: Any) -> str:
        key = key or self.current
        payload = claims if claims is not None else self.claims(**overrides)
        return jwt.encode(payload, key.private, algorithm=key.alg, headers={"kid": key.kid})

    def sign_legacy(self, claims: dict[str, Any] | None = None, **overrides: Any) -> str:
        payload = claims if claims is not None else self.claims(**overrides)
        return jwt.encode(payload, LEGACY_SECRET, algorithm="HS256")

    # -- serving ----------------------------------------------------------------

    async def _jwks(self, _request: web.Request) -> web.Response:
        self.fetches += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_with is not None:
            return web.json_response({"error": "unavailable"}, status=self.fail_with)
        return web.json_response(self.document(), headers={"cache-control": "public, max-age=600"})


def add_jwks_route(app: web.Application, idp: IdentityProvider) -> None:
    """Serve `idp`'s JWKS where a Supabase project publishes it."""
    app.router.add_get("/auth/v1/.well-known/jwks.json", idp._jwks)


@asynccontextmanager
async def identity_provider(*algs: str) -> AsyncIterator[IdentityProvider]:
    """Run the JWKS endpoint on a loopback port with one published key per alg (ES256 by default)."""
    idp = IdentityProvider(free_port())
    for alg in algs or ("ES256",):
        idp.add_key(alg)
    app = web.Application()
    add_jwks_route(app, idp)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", idp.port)
    await site.start()
    try:
        yield idp
    finally:
        await runner.cleanup()
