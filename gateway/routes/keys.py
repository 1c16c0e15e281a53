"""Bring your own key: `PUT /v1/keys/{provider}`, `GET /v1/keys`, `GET|DELETE /v1/keys/{provider}`.

Keys are encrypted before they reach the store and never come back out of the API: responses carry only a
masked hint (`sk-…abcd`) and dates. A caller manages only their own keys.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from gateway.deps import STORE_FAILURES, CurrentUser, JsonBody, ServicesDep
from gateway.keys import KEYLESS
from gateway.openapi import declares, raising
from gateway.stores.base import KeyInfo
from sessions.errors import fail

router = APIRouter(tags=["keys"])

PROVIDER = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
BUILTIN = frozenset({"openai", "anthropic", "gemini"})


class KeyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_body_bytes: ClassVar[int] = 16 * 1024

    # One line of printable characters, surrounding spaces dropped: the pattern tells clients, the route checks
    # (with a plainer message than a pattern's, and for the unprintable characters a pattern cannot name).
    api_key: str = Field(min_length=8, max_length=4096, json_schema_extra={"pattern": r"^\s*[^\s\x00-\x1f\x7f]+\s*$"})


class StoredKey(BaseModel):
    provider: str
    hint: str = Field(description="The key masked, e.g. `sk-…abcd`: the key itself never comes back.")
    created_at: str = Field(json_schema_extra={"format": "date-time"})
    updated_at: str = Field(json_schema_extra={"format": "date-time"})


class StoredKeys(BaseModel):
    object: Literal["list"]
    data: list[StoredKey]


class KeyDeleted(BaseModel):
    provider: str
    deleted: Literal[True]


def key_json(k: KeyInfo) -> dict[str, Any]:
    return {
        "provider": k.provider,
        "hint": k.hint,
        "created_at": k.created_at.isoformat().replace("+00:00", "Z"),
        "updated_at": k.updated_at.isoformat().replace("+00:00", "Z"),
    }


@raising("unknown_provider")
async def known_provider(
    provider: Annotated[str, Path(description="`openai`, `anthropic`, `gemini`, or a configured compatible server.")],
    services: ServicesDep,
) -> str:
    known = (BUILTIN | set(services.providers)) - KEYLESS
    if not PROVIDER.match(provider) or provider not in known:
        raise fail("unknown_provider", f"no provider {provider[:40]!r} takes keys here")
    return provider


# Checked after the caller, before the body is read.
Provider = Annotated[str, Depends(known_provider)]


def key_not_found(provider: str) -> Exception:
    return fail("key_not_found", f"you have no stored key for {provider!r}")


@router.put("/v1/keys/{provider}", response_model=StoredKey)
@declares(raises=("invalid_request", *STORE_FAILURES))
async def put_key(
    user: CurrentUser, provider: Provider, body: JsonBody[KeyBody], services: ServicesDep
) -> dict[str, Any]:
    api_key = body.api_key.strip()
    if not api_key or any(c.isspace() or not c.isprintable() for c in api_key):
        raise fail("invalid_request", "api_key: must be one line of printable characters")
    return key_json(await services.keys.put(user.user_id, provider, api_key))


@router.get("/v1/keys", response_model=StoredKeys)
@declares(raises=STORE_FAILURES)
async def list_keys(user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    keys = await services.keys.list(user.user_id)
    return {"object": "list", "data": [key_json(k) for k in keys]}


@router.get("/v1/keys/{provider}", response_model=StoredKey)
@declares(raises=("key_not_found", *STORE_FAILURES))
async def get_key(user: CurrentUser, provider: Provider, services: ServicesDep) -> dict[str, Any]:
    found = next((k for k in await services.keys.list(user.user_id) if k.provider == provider), None)
    if found is None:
        raise key_not_found(provider)
    return key_json(found)


@router.delete("/v1/keys/{provider}", response_model=KeyDeleted)
@declares(raises=("key_not_found", *STORE_FAILURES))
async def delete_key(user: CurrentUser, provider: Provider, services: ServicesDep) -> dict[str, Any]:
    if not await services.keys.delete(user.user_id, provider):
        raise key_not_found(provider)
    return {"provider": provider, "deleted": True}
