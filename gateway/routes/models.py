"""The model list and one model, in the OpenAI shape plus our own fields (provider, availability, fallbacks)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel

from gateway.deps import STORE_FAILURES, CurrentUser, ServicesDep
from gateway.openapi import declares
from gateway.services import Services
from providers.catalog import ModelSpec, UnknownModel
from providers.pricing import is_priced
from sessions.errors import fail

router = APIRouter(tags=["models"])


class ModelInfo(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
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


def model_json(spec: ModelSpec, usable: set[str]) -> dict[str, Any]:
    available = spec.provider in usable
    return {
        "id": spec.id,
        "object": "model",
        "created": 0,
        "owned_by": spec.provider,
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
async def list_models(user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    usable = await services.keys.usable_providers(user.user_id)
    data = [model_json(spec, usable) for spec in services.catalog if _served(services, spec)]
    return {"object": "list", "data": data}


@router.get("/v1/models/{model_id:path}", response_model=ModelInfo)
@declares(raises=(*STORE_FAILURES, "unknown_model"))
async def get_model(model_id: str, user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    """One model, by its id or an alias (the answer names its id), as `client.models.retrieve(id)` reads it."""
    try:
        spec = services.catalog.resolve(model_id)
    except UnknownModel:
        spec = None
    if spec is None or not _served(services, spec):
        raise fail("unknown_model", f"unknown model {model_id!r}")
    return model_json(spec, await services.keys.usable_providers(user.user_id))
