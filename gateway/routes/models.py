"""The model list and one model, in the OpenAI shape and the Anthropic one at once (each SDK reads its own fields
and keeps the others), plus our own fields (provider, availability, fallbacks). The Anthropic SDKs' `x-api-key`
is accepted as well as a bearer token."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from gateway.deps import STORE_FAILURES, KeyOrBearerUser, ServicesDep
from gateway.openapi import declares
from gateway.services import Services
from providers.catalog import ModelSpec, UnknownModel
from providers.pricing import is_priced
from sessions.errors import fail

router = APIRouter(tags=["models"])


# The catalog has no release dates: both SDKs get the epoch rather than a made-up date.
EPOCH = "1970-01-01T00:00:00Z"


class ModelInfo(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    type: Literal["model"] = Field(description="The Anthropic SDKs' name for `object`.")
    display_name: str = Field(description="For the Anthropic SDKs: the id.")
    created_at: str = Field(description="For the Anthropic SDKs: the epoch (the catalog keeps no release dates).")
    provider: str
    tier: str
    available: bool
    unavailable_reason: Literal["no_key"] | None
    context_window: int | None  # None: unknown (it counts as larger than any other)
    fallbacks: list[str]
    aliases: list[str]
    priced: bool


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelInfo]
    has_more: Literal[False] = Field(description="Anthropic's paging: the whole list is one page.")
    first_id: str | None
    last_id: str | None


def model_json(spec: ModelSpec, usable: set[str]) -> dict[str, Any]:
    available = spec.provider in usable
    return {
        "id": spec.id,
        "object": "model",
        "created": 0,
        "owned_by": spec.provider,
        "type": "model",
        "display_name": spec.id,
        "created_at": EPOCH,
        "provider": spec.provider,
        "tier": spec.tier,
        "available": available,
        "unavailable_reason": None if available else "no_key",
        "context_window": spec.context_window,
        "fallbacks": list(spec.fallbacks),
        "aliases": list(spec.aliases),
        "priced": is_priced(spec),
    }


def _served(services: Services, spec: ModelSpec) -> bool:
    return spec.provider in services.providers


@router.get("/v1/models", response_model=ModelList)
@declares(raises=STORE_FAILURES)
async def list_models(user: KeyOrBearerUser, services: ServicesDep) -> dict[str, Any]:
    usable = await services.keys.usable_providers(user.user_id)
    data = [model_json(spec, usable) for spec in services.catalog if _served(services, spec)]
    first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
    return {"object": "list", "data": data, "has_more": False, "first_id": first, "last_id": last}


@router.get("/v1/models/{model_id:path}", response_model=ModelInfo)
@declares(raises=(*STORE_FAILURES, "unknown_model"))
async def get_model(model_id: str, user: KeyOrBearerUser, services: ServicesDep) -> dict[str, Any]:
    """One model, by its id or an alias (the answer names its id), as `client.models.retrieve(id)` reads it."""
    try:
        spec = services.catalog.resolve(model_id)
    except UnknownModel:
        spec = None
    if spec is None or not _served(services, spec):
        raise fail("unknown_model", f"unknown model {model_id!r}")
    return model_json(spec, await services.keys.usable_providers(user.user_id))
