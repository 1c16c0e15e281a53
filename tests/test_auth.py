"""Token verification against a local Supabase-shaped JWKS server: the good tokens pass, every forgery fails
with its own code, and the JWKS endpoint is fetched sparingly (cache, single flight, unknown-kid cooldown)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from gateway.auth import Authenticator, JWKSVerifier
from gateway.errors import status_of
from gateway.jwks import JWKSCache
from gateway.wiring import build_auth
from sessions.errors import GatewayError
from tests.conftest import make_settings
from tests.support.jwks import (
    LEGACY_SECRET,
    IdentityProvider,
    hs256_forgery,
    identity_provider,
    new_key,
    raw_token,
)


@pytest.fixture
async def idp() -> AsyncIterator[IdentityProvider]:
    async with identity_provider("ES256", "RS256") as server:
        yield server


def gateway_auth(tmp_path: Path, idp: IdentityProvider, **overrides: Any) -> Authenticator:
    base: dict[str, Any] = {"supabase_url": idp.url, "supabase_jwt_secret": LEGACY_SECRET}
    base.update(overrides)
    return build_auth(make_settings(tmp_path, **base))


async def refused(auth: Authenticator, token: str) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        await auth.verify(token)
    return info.value


async def test_es256_rs256_and_legacy_hs256_tokens_pass_side_by_side(tmp_path: Path, idp: IdentityProvider) -> None:
    auth = gateway_auth(tmp_path, idp)
    es, rs = (k for k in idp.keys.values())
    assert {es.alg, rs.alg} == {"ES256", "RS256"}
    for token in (idp.sign(key=es), idp.sign(key=rs), idp.sign_legacy()):
        user = await auth.verify(token)
        assert user.role == "authenticated" and user.expires_at is not None and user.expires_at > time.time()
    # The dev token of a development gateway still works next to Supabase's.
    assert (await auth.verify(auth.mint_dev_token())).email == "dev@localhost"
    assert idp.fetches == 1  # one fetch served both asymmetric keys
    await auth.aclose()


async def test_subject_and_expiry_come_from_the_token(tmp_path: Path, idp: IdentityProvider) -> None:
    auth = gateway_auth(tmp_path, idp)
    claims = idp.claims(sub="0b7a6d2e-3c1f-4c55-9a51-1d0f7e2b9c10", exp=int(time.time()) + 120, email="a@b.c")
    user = await auth.verify(idp.sign(claims))
    assert (user.user_id, user.email, user.expires_at) == (claims["sub"], "a@b.c", float(claims["exp"]))
    await auth.aclose()


def _attacks(idp: IdentityProvider) -> list[tuple[str, str, str]]:
    """(name, token, expected code) for every forgery the gateway must refuse."""
    now = int(time.time())
    es = next(k for k in idp.keys.values() if k.alg == "ES256")
    rs = next(k for k in idp.keys.values() if k.alg == "RS256")
    impostor = new_key("ES256", kid=es.kid)  # same kid, other private key
    c = idp.claims()
    return [
        ("expired", idp.sign(idp.claims(exp=now - 60, iat=now - 3660)), "token_expired"),
        ("not yet valid", idp.sign(idp.claims(nbf=now + 600)), "token_not_yet_valid"),
        ("issued in the future", idp.sign(idp.claims(iat=now + 600)), "token_not_yet_valid"),
        ("wrong audience", idp.sign(idp.claims(aud="someone-else")), "invalid_audience"),
        ("no audience", idp.sign(idp.claims(aud=None)), "invalid_token"),
        ("wrong issuer", idp.sign(idp.claims(iss="https://evil.example/auth/v1")), "invalid_issuer"),
        ("no expiry", idp.sign(idp.claims(exp=None)), "invalid_token"),
        ("bad signature", idp.sign(c, key=impostor), "invalid_signature"),
        ("tampered payload", _tamper(idp.sign(c, key=rs)), "invalid_signature"),
        ("alg none", raw_token({"alg": "none", "typ": "JWT"}, c), "invalid_algorithm"),
        ("alg none with kid", raw_token({"alg": "none", "kid": es.kid}, c), "invalid_algorithm"),
        (
            "HS256 with the ES public key",
            hs256_forgery({"alg": "HS256", "kid": es.kid}, c, es.public_pem()),
            "invalid_signature",
        ),
        (
            "HS256 with the RS public key",
            hs256_forgery({"alg": "HS256", "kid": rs.kid}, c, rs.public_pem()),
            "invalid_signature",
        ),
        ("ES256 header on an RSA key", raw_token({"alg": "ES256", "kid": rs.kid}, c, b"x" * 64), "invalid_algorithm"),
        ("unsupported alg", raw_token({"alg": "ES512", "kid": es.kid}, c, b"x" * 132), "invalid_algorithm"),
        ("unknown kid", idp.sign(c, key=new_key("ES256")), "unknown_key"),
        ("no kid", jwt.encode(c, es.private, algorithm="ES256"), "invalid_token"),
        ("anon role", idp.sign(idp.claims(role="anon")), "anon_refused"),
        ("anonymous without a user role", idp.sign(idp.claims(role="", is_anonymous=True)), "anon_refused"),
        ("odd role", idp.sign(idp.claims(role="supabase_admin")), "invalid_role"),
        ("subject not a user id", idp.sign(idp.claims(sub="admin")), "invalid_token"),
        ("legacy secret, wrong issuer", idp.sign_legacy(idp.claims(iss="https://x.example/auth/v1")), "invalid_issuer"),
        ("legacy secret, expired", idp.sign_legacy(idp.claims(exp=now - 60)), "token_expired"),
        ("garbage", "not.a.token", "invalid_token"),
        ("oversized", "a" * 20_000, "invalid_token"),
    ]


def _tamper(token: str) -> str:
    header, _, sig = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["role"] = "service_role"
    forged = raw_token(jwt.get_unverified_header(token), claims).split(".")[1]
    return f"{header}.{forged}.{sig}"


async def test_every_forgery_is_refused_with_its_code(tmp_path: Path, idp: IdentityProvider) -> None:
    auth = gateway_auth(tmp_path, idp)
    await auth.verify(idp.sign())  # warm the cache, so "unknown kid" below is a refetch
    results = {name: (await refused(auth, token)).code for name, token, _ in _attacks(idp)}
    expected = {name: code for name, _, code in _attacks(idp)}
    assert results == expected
    await auth.aclose()


async def test_status_of_refusals(tmp_path: Path, idp: IdentityProvider) -> None:
    auth = gateway_auth(tmp_path, idp)
    assert status_of(await refused(auth, idp.sign(idp.claims(role="anon")))) == 403
    assert status_of(await refused(auth, idp.sign(idp.claims(aud="x")))) == 401
    await auth.aclose()


async def test_algorithm_confusion_without_any_shared_secret(tmp_path: Path, idp: IdentityProvider) -> None:
    """With only the JWKS configured, an HS256 token has no verifier at all: refused as an algorithm."""
    http = httpx.AsyncClient()
    jwks = JWKSVerifier(JWKSCache(f"{idp.issuer}/.well-known/jwks.json", http), idp.issuer, "authenticated")
    auth = Authenticator([], None, jwks)
    es = idp.current
    c = idp.claims()
    for secret in (es.public_pem(), str(es.jwk()).encode(), b""):
        forged = hs256_forgery({"alg": "HS256", "kid": es.kid}, c, secret)
        assert (await refused(auth, forged)).code == "invalid_algorithm"
    assert (await auth.verify(idp.sign(c))).user_id == c["sub"]
    await auth.aclose()


async def test_unknown_kid_refetches_once_and_a_flood_does_not_hammer(tmp_path: Path, idp: IdentityProvider) -> None:
    auth = gateway_auth(tmp_path, idp, gateway_jwks_cooldown_s=30)
    await auth.verify(idp.sign())
    assert idp.fetches == 1
    stranger = new_key("ES256")
    assert (await refused(auth, idp.sign(key=stranger))).code == "unknown_key"
    assert idp.fetches == 2  # one refetch for the unknown kid
    forged = [idp.sign(key=new_key("ES256")) for _ in range(60)]
    outcomes = await asyncio.gather(*(auth.verify(t) for t in forged), return_exceptions=True)
    assert all(isinstance(o, GatewayError) and o.code == "unknown_key" for o in outcomes)
    assert idp.fetches == 2  # the flood, inside the cooldown, fetched nothing
    assert (await auth.verify(idp.sign())).role == "authenticated"  # real users are unaffected
    await auth.aclose()


async def test_flood_costs_at_most_one_fetch_per_cooldown(tmp_path: Path, idp: IdentityProvider) -> None:
    cooldown = 0.3
    auth = gateway_auth(tmp_path, idp, gateway_jwks_cooldown_s=cooldown)
    await auth.verify(idp.sign())
    forged = [idp.sign(key=new_key("ES256")) for _ in range(8)]
    start, before = time.monotonic(), idp.fetches
    while time.monotonic() - start < 1.2:
        await asyncio.gather(*(auth.verify(t) for t in forged), return_exceptions=True)
        await asyncio.sleep(0.01)
    elapsed = time.monotonic() - start
    assert 1 <= idp.fetches - before <= int(elapsed / cooldown) + 1
    await auth.aclose()


async def test_concurrent_first_requests_share_one_fetch(tmp_path: Path, idp: IdentityProvider) -> None:
    idp.delay_s = 0.2
    auth = gateway_auth(tmp_path, idp)
    users = await asyncio.gather(*(auth.verify(idp.sign()) for _ in range(20)))
    assert len(users) == 20 and idp.fetches == 1
    await auth.aclose()


async def test_key_rotation_without_restart(tmp_path: Path, idp: IdentityProvider) -> None:
    auth = gateway_auth(tmp_path, idp, gateway_jwks_cooldown_s=0.2, gateway_jwks_cache_s=1.0)
    old = idp.current
    old_token = idp.sign(key=old)
    await auth.verify(old_token)
    await asyncio.sleep(0.25)  # past the cooldown: a new kid may trigger a refetch
    new = idp.rotate("ES256")  # both keys published, as after a Supabase rotation
    assert (await auth.verify(idp.sign(key=new))).role == "authenticated"
    assert (await auth.verify(old_token)).role == "authenticated"
    idp.withdraw(old.kid)  # the old key is revoked at the provider
    await asyncio.sleep(1.1)  # the cache may not outlive its max age
    assert (await refused(auth, old_token)).code == "unknown_key"
    assert (await auth.verify(idp.sign(key=new))).role == "authenticated"
    await auth.aclose()


async def test_cache_is_capped_at_ten_minutes(tmp_path: Path, idp: IdentityProvider) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        make_settings(tmp_path, supabase_url=idp.url, gateway_jwks_cache_s=3600)
    clock = [0.0]
    cache = JWKSCache(
        f"{idp.issuer}/.well-known/jwks.json", httpx.AsyncClient(), max_age_s=86400, clock=lambda: clock[0]
    )
    await cache.key(idp.current.kid)
    clock[0] = 599.0
    await cache.key(idp.current.kid)
    assert idp.fetches == 1
    clock[0] = 601.0
    await cache.key(idp.current.kid)
    assert idp.fetches == 2
    await cache.aclose()


async def test_jwks_outage_is_503_and_backs_off(tmp_path: Path, idp: IdentityProvider) -> None:
    idp.fail_with = 500
    auth = gateway_auth(tmp_path, idp, gateway_jwks_cooldown_s=30)
    errors = await asyncio.gather(*(refused(auth, idp.sign()) for _ in range(10)))
    assert {(e.code, status_of(e)) for e in errors} == {("auth_unavailable", 503)}
    assert idp.fetches == 1
    await auth.aclose()


async def test_jwks_documents_with_unusable_keys_are_filtered(tmp_path: Path, idp: IdentityProvider) -> None:
    """An `oct` key or a P-384 key in the JWKS must never verify anything."""
    from gateway.jwks import parse_jwks

    doc = idp.document()
    doc["keys"] += [
        {"kty": "oct", "kid": "shared", "k": "c2VjcmV0", "alg": "HS256"},
        {**new_key("ES256").jwk(), "kid": "enc", "use": "enc"},
        {"kty": "EC", "kid": "p384", "crv": "P-384", "x": "AA", "y": "AA"},
        "junk",
    ]
    assert set(parse_jwks(doc)) == {k.kid for k in idp.keys.values()}
    with pytest.raises(ValueError):
        parse_jwks({"nokeys": []})
