"""Bring your own key: `PUT /v1/keys/{provider}`, `GET /v1/keys`, `GET|DELETE /v1/keys/{provider}`.

Keys are encrypted before they reach the store and never come back out of the API: responses carry only a
masked hint (`sk-…abcd`) and dates. A caller manages only their own keys.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import JSONResponse

from gateway.deps import CurrentUser, ServicesDep
from gateway.errors import error_response
from gateway.keys import KEYLESS
from gateway.routes.streams import read_json_body
from gateway.services import Services
from gateway.stores.base import KeyInfo, StoreError, StoreUnavailable, UnknownUser

router = APIRouter(tags=["keys"])

PROVIDER = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
BUILTIN = frozenset({"openai", "anthropic", "gemini"})
MAX_BODY = 16 * 1024


class KeyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_key: str = Field(min_length=8, max_length=4096)


def key_json(k: KeyInfo) -> dict[str, Any]:
    return {
        "provider": k.provider,
        "hint": k.hint,
        "created_at": k.created_at.isoformat().replace("+00:00", "Z"),
        "updated_at": k.updated_at.isoformat().replace("+00:00", "Z"),
    }


def check_provider(services: Services, provider: str) -> JSONResponse | None:
    known = (BUILTIN | set(services.providers)) - KEYLESS
    if not PROVIDER.match(provider) or provider not in known:
        return error_response(404, "unknown_provider", f"no provider {provider[:40]!r} takes keys here")
    return None


def store_failure(exc: StoreError | StoreUnavailable) -> JSONResponse:
    if isinstance(exc, StoreUnavailable):
        return error_response(503, "store_unavailable", "the key store is unreachable; try again shortly")
    if isinstance(exc, UnknownUser):
        return error_response(409, "unknown_user", "your account is not known to the database")
    return error_response(500, "store_error", "the key store refused the request")


@router.put("/v1/keys/{provider}", response_model=None)
async def put_key(provider: str, request: Request, user: CurrentUser, services: ServicesDep) -> Any:
    if (bad := check_provider(services, provider)) is not None:
        return bad
    body = await read_json_body(request, MAX_BODY)
    if isinstance(body, JSONResponse):
        return body
    try:
        parsed = KeyBody.model_validate_json(body)
    except ValidationError as exc:
        # Only the field and the rule: never the submitted value.
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        code = "invalid_json" if first["type"] == "json_invalid" else "invalid_request"
        return error_response(422, code, f"{where}: {first['msg']}")
    api_key = parsed.api_key.strip()
    if not api_key or any(c.isspace() or not c.isprintable() for c in api_key):
        return error_response(422, "invalid_request", "api_key: must be one line of printable characters")
    try:
        info = await services.keys.put(user.user_id, provider, api_key)
    except (StoreError, StoreUnavailable) as exc:
        return store_failure(exc)
    return key_json(info)


@router.get("/v1/keys")
async def list_keys(user: CurrentUser, services: ServicesDep) -> Any:
    try:
        keys = await services.keys.list(user.user_id)
    except (StoreError, StoreUnavailable) as exc:
        return store_failure(exc)
    return {"object": "list", "data": [key_json(k) for k in keys]}


@router.get("/v1/keys/{provider}")
async def get_key(provider: str, user: CurrentUser, services: ServicesDep) -> Any:
    if (bad := check_provider(services, provider)) is not None:
        return bad
    try:
        keys = await services.keys.list(user.user_id)
    except (StoreError, StoreUnavailable) as exc:
        return store_failure(exc)
    found = next((k for k in keys if k.provider == provider), None)
    if found is None:
        return error_response(404, "key_not_found", f"you have no stored key for {provider!r}")
    return key_json(found)


@router.delete("/v1/keys/{provider}")
async def delete_key(provider: str, user: CurrentUser, services: ServicesDep) -> Any:
    if (bad := check_provider(services, provider)) is not None:
        return bad
    try:
        deleted = await services.keys.delete(user.user_id, provider)
    except (StoreError, StoreUnavailable) as exc:
        return store_failure(exc)
    if not deleted:
        return error_response(404, "key_not_found", f"you have no stored key for {provider!r}")
    return {"provider": provider, "deleted": True}
