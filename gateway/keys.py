"""Which provider keys a user streams with: their own stored key first, else the operator's where allowed."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gateway.crypto import CryptoError, KeyRing, mask
from gateway.stores.base import KeyInfo, SecretStore, StoredSecret, StoreUnavailable
from providers.base import Credential
from sessions.errors import fail

log = logging.getLogger("gateway.keys")

# Providers that need no key at all.
KEYLESS = frozenset({"mock"})


class StaticResolver:
    def __init__(self, creds: Mapping[str, Credential]) -> None:
        self._creds = creds

    async def credential(self, provider: str) -> Credential | None:
        if provider in KEYLESS:
            return Credential("", "none")
        return self._creds.get(provider)


class OperatorKeyDirectory:
    """Operator keys from settings (only when the operator allows them). User keys arrive with the key store."""

    def __init__(
        self, operator_keys: Mapping[str, str], allow_operator_keys: bool, shared: Mapping[str, str] | None = None
    ) -> None:
        self._operator = (
            {p: Credential(k, "operator") for p, k in operator_keys.items() if k} if allow_operator_keys else {}
        )
        # Servers the operator configured for everyone (OpenAI-compatible ones): served regardless of
        # GATEWAY_ALLOW_OPERATOR_KEYS; an empty key means the server needs none.
        for name, key in (shared or {}).items():
            self._operator[name] = Credential(key, "operator" if key else "none")

    async def resolver_for(self, user_id: str) -> StaticResolver:
        return StaticResolver(self._operator)

    def available(self) -> set[str]:
        return set(self._operator) | set(KEYLESS)


@dataclass(slots=True)
class _Cached:
    secrets: dict[str, StoredSecret]
    loaded_at: float


class UserKeyResolver:
    """One stream's view of its user's keys: their own stored key first, then the operator's.

    The user's ciphertexts are read once per resolver (one query per stream start); a key is decrypted
    only when a provider actually asks for it, and the plaintext lives only in the returned Credential.
    """

    def __init__(self, directory: UserKeyDirectory, user_id: str, fallback: StaticResolver) -> None:
        self._dir = directory
        self._user_id = user_id
        self._fallback = fallback
        self._secrets: dict[str, StoredSecret] | None = None
        self._store_error: StoreUnavailable | None = None
        self._creds: dict[str, Credential | None] = {}

    async def credential(self, provider: str) -> Credential | None:
        if provider in KEYLESS:
            return Credential("", "none")
        if provider in self._creds:
            return self._creds[provider]
        cred = await self._own(provider)
        if cred is None:
            cred = await self._fallback.credential(provider)
            if cred is None and self._store_error is not None:
                raise fail("keys_unavailable", "your stored keys cannot be read right now; try again shortly")
        self._creds[provider] = cred
        return cred

    async def _own(self, provider: str) -> Credential | None:
        if self._secrets is None and self._store_error is None:
            try:
                self._secrets = await self._dir.secrets_of(self._user_id)
            except StoreUnavailable as exc:
                self._store_error = exc
                log.warning("key store unreachable", extra={"user_id": self._user_id, "error": str(exc)})
        stored = (self._secrets or {}).get(provider)
        if stored is None:
            return None
        try:
            key = self._dir.ring.decrypt(stored.ciphertext, user_id=self._user_id, provider=provider)
        except CryptoError as exc:
            # Never the key or the ciphertext: only what identifies the row and why it failed.
            log.error(
                "stored key cannot be decrypted",
                extra={
                    "user_id": self._user_id,
                    "provider": provider,
                    "key_id": stored.key_id,
                    "error": f"{type(exc).__name__}: {exc}",
                },
            )
            return None
        return Credential(key, "user")


class UserKeyDirectory:
    """Users' own keys (encrypted in the store) with the operator's keys as the fallback.

    Ciphertexts are cached per user for a few seconds so a burst of stream starts costs one query; this
    instance's own writes invalidate at once, other instances' within `cache_ttl_s`.
    """

    def __init__(
        self,
        store: SecretStore,
        ring: KeyRing,
        operator: OperatorKeyDirectory,
        *,
        cache_ttl_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.ring = ring
        self.operator = operator
        self._ttl = cache_ttl_s
        self._clock = clock
        self._cache: dict[str, _Cached] = {}

    async def resolver_for(self, user_id: str) -> UserKeyResolver:
        return UserKeyResolver(self, user_id, await self.operator.resolver_for(user_id))

    def available(self) -> set[str]:
        """Providers usable without a stored key."""
        return self.operator.available()

    async def usable_providers(self, user_id: str) -> set[str]:
        """Providers the user can stream with, from which keys exist: nothing is decrypted to answer."""
        try:
            own = set(await self.secrets_of(user_id))
        except StoreUnavailable:
            own = set()
        return own | self.available()

    async def secrets_of(self, user_id: str) -> dict[str, StoredSecret]:
        now = self._clock()
        hit = self._cache.get(user_id)
        if hit is not None and now - hit.loaded_at < self._ttl:
            return hit.secrets
        found = {s.provider: s for s in await self.store.user_secrets(user_id)}
        if len(self._cache) > 10_000:  # bound memory: drop the oldest half
            for uid, _ in sorted(self._cache.items(), key=lambda kv: kv[1].loaded_at)[:5_000]:
                del self._cache[uid]
        self._cache[user_id] = _Cached(found, now)
        return found

    async def put(self, user_id: str, provider: str, api_key: str) -> KeyInfo:
        token = self.ring.encrypt(api_key, user_id=user_id, provider=provider)
        try:
            return await self.store.put_secret(user_id, provider, token, self.ring.current_kid, mask(api_key))
        finally:
            self._cache.pop(user_id, None)

    async def list(self, user_id: str) -> list[KeyInfo]:
        return await self.store.list_keys(user_id)

    async def delete(self, user_id: str, provider: str) -> bool:
        try:
            return await self.store.delete_secret(user_id, provider)
        finally:
            self._cache.pop(user_id, None)
