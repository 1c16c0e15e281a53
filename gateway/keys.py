"""Which provider keys a user streams with: their own stored key first, else the operator's where allowed."""

from __future__ import annotations

from collections.abc import Mapping

from providers.base import Credential

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

    def __init__(self, operator_keys: Mapping[str, str], allow_operator_keys: bool) -> None:
        self._operator = (
            {p: Credential(k, "operator") for p, k in operator_keys.items() if k} if allow_operator_keys else {}
        )

    async def resolver_for(self, user_id: str) -> StaticResolver:
        return StaticResolver(self._operator)

    def available(self) -> set[str]:
        return set(self._operator) | set(KEYLESS)
