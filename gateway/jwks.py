"""The project's JWKS: its public signing keys, fetched over HTTP and held for a while (`gateway.auth` verifies
tokens with them)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import httpx
import jwt

from sessions.errors import fail

log = logging.getLogger("gateway.auth")  # part of authentication: its records go where the rest of it logs

# Asymmetric algorithms accepted from the JWKS, with the key type each one needs. Explicit lists only:
# a JWKS key can never verify an HS256 token, and a shared secret can never verify an ES256/RS256 one.
ASYMMETRIC_ALGORITHMS: dict[str, tuple[str, str | None]] = {"ES256": ("EC", "P-256"), "RS256": ("RSA", None)}
JWKS_MAX_AGE_CAP_S = 600.0  # Supabase's edge caches the JWKS for 10 minutes; never hold keys longer


def parse_jwks(document: object) -> dict[str, jwt.PyJWK]:
    """The usable signing keys of a JWKS document by kid; anything else (oct, other curves, enc keys) is skipped."""
    keys: dict[str, jwt.PyJWK] = {}
    raw = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(raw, list):
        raise ValueError("a JWKS document needs a 'keys' list")
    for entry in raw:
        if not isinstance(entry, dict):
            continue
        kid, kty, alg = entry.get("kid"), entry.get("kty"), entry.get("alg")
        if not isinstance(kid, str) or not kid or entry.get("use", "sig") != "sig":
            continue
        if alg is not None and alg not in ASYMMETRIC_ALGORITHMS:
            continue
        try:
            key = jwt.PyJWK(entry)
        except jwt.PyJWTError:
            log.warning("skipping an unusable JWKS key", extra={"kid": kid, "kty": kty})
            continue
        want = ASYMMETRIC_ALGORITHMS.get(key.algorithm_name)
        if want is None or want[0] != kty or (want[1] is not None and entry.get("crv") != want[1]):
            continue
        keys[kid] = key
    return keys


class JWKSCache:
    """Public keys from the project's JWKS endpoint, fetched with httpx and held for at most `max_age_s`.

    An unknown kid triggers one refetch, but no more often than `refetch_cooldown_s`, so tokens with forged
    kids cannot make us hammer the endpoint. Concurrent callers share one fetch.
    """

    def __init__(
        self,
        url: str,
        http: httpx.AsyncClient,
        *,
        max_age_s: float = JWKS_MAX_AGE_CAP_S,
        refetch_cooldown_s: float = 30.0,
        fetch_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._http = http
        self._max_age = min(max_age_s, JWKS_MAX_AGE_CAP_S)
        self._cooldown = refetch_cooldown_s
        self._timeout = fetch_timeout_s
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last fetch, successful or not
        self._miss_refetch_at: float | None = None  # last refetch caused by an unknown kid
        self._last_failed = False
        self._generation = 0
        self._lock = asyncio.Lock()
        self.fetches = 0

    def _fresh(self, now: float) -> bool:
        return self._fetched_at is not None and now - self._fetched_at < self._max_age

    async def key(self, kid: str) -> jwt.PyJWK:
        now = self._clock()
        if self._fresh(now):
            found = self._keys.get(kid)
            if found is not None:
                return found
            # Unknown kid: maybe a rotation we have not seen, maybe a forgery. Refetch, but once per cooldown.
            if self._miss_refetch_at is not None and now - self._miss_refetch_at < self._cooldown:
                raise fail("unknown_key", "the token was signed with an unknown key")
            self._miss_refetch_at = now
        elif (
            self._last_failed and self._attempted_at is not None and now - self._attempted_at < min(self._cooldown, 5.0)
        ):
            raise fail("auth_unavailable", "the identity provider's keys cannot be fetched")
        await self._refresh()
        if not self._fresh(self._clock()):
            raise fail("auth_unavailable", "the identity provider's keys cannot be fetched")
        found = self._keys.get(kid)
        if found is None:
            raise fail("unknown_key", "the token was signed with an unknown key")
        return found

    async def _refresh(self) -> None:
        seen = self._generation
        async with self._lock:
            if self._generation != seen:
                return  # another caller fetched while we waited
            try:
                self.fetches += 1
                response = await self._http.get(self.url, timeout=self._timeout)
                response.raise_for_status()
                keys = parse_jwks(response.json())
            except (httpx.HTTPError, ValueError) as exc:
                self._last_failed = True
                log.warning("JWKS fetch failed", extra={"url": self.url, "error": type(exc).__name__})
            else:
                self._keys = keys
                self._fetched_at = self._clock()
                self._last_failed = False
                log.info("JWKS fetched", extra={"url": self.url, "kids": sorted(keys)})
            finally:
                self._attempted_at = self._clock()
                self._generation += 1

    async def aclose(self) -> None:
        """Closes the HTTP client, which the cache owns."""
        await self._http.aclose()
