"""A token verified lately is not checked again, but never past its expiry or the remembering window."""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest

from gateway.auth import DEV_ISSUER, Authenticator, HS256Verifier
from sessions.errors import GatewayError

SECRET = "a-test-secret-that-is-long-enough-0123456789"
USER = "00000000-0000-4000-8000-0000000000c1"


class CountingVerifier(HS256Verifier):
    calls = 0

    def verify(self, token: str) -> dict[str, object]:
        type(self).calls += 1
        return super().verify(token)


def token(exp_in: float, secret: str = SECRET) -> str:
    now = time.time()
    claims = {
        "sub": USER,
        "role": "authenticated",
        "aud": "authenticated",
        "iss": DEV_ISSUER,
        "iat": int(now),
        "exp": now + exp_in,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


async def test_repeated_token_is_checked_once_within_the_window() -> None:
    CountingVerifier.calls = 0
    auth = Authenticator([CountingVerifier(SECRET, DEV_ISSUER, "authenticated")], remember_s=0.3)
    t = token(60)
    for _ in range(5):
        assert (await auth.verify(t)).user_id == USER
    assert CountingVerifier.calls == 1
    await asyncio.sleep(0.35)
    await auth.verify(t)
    assert CountingVerifier.calls == 2


async def test_remembered_token_is_rechecked_at_its_expiry() -> None:
    CountingVerifier.calls = 0
    auth = Authenticator([CountingVerifier(SECRET, DEV_ISSUER, "authenticated")], remember_s=30)
    t = token(0.3)
    await auth.verify(t)
    await auth.verify(t)
    assert CountingVerifier.calls == 1
    await asyncio.sleep(0.4)
    await auth.verify(t)  # within the verifier's clock leeway, but checked again rather than taken from memory
    assert CountingVerifier.calls == 2


async def test_forged_tokens_are_never_remembered() -> None:
    auth = Authenticator([HS256Verifier(SECRET, DEV_ISSUER, "authenticated")], remember_s=30)
    forged = token(60, secret="another-secret-entirely-0123456789abcdef")
    for _ in range(2):
        with pytest.raises(GatewayError) as info:
            await auth.verify(forged)
        assert info.value.code == "invalid_signature"
