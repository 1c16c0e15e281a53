"""The model list, in the OpenAI shape plus our own fields (provider, availability, fallbacks)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel

from gateway.deps import STORE_FAILURES, CurrentUser, ServicesDep
from gateway.openapi import declares
from providers.pricing import is_priced

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


@router.get("/v1/models", response_model=ModelList)
@declares(raises=STORE_FAILURES)
async def list_models(user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    usable = await services.keys.usable_providers(user.user_id)
    data = []
    for spec in services.catalog:
        if spec.provider not in services.providers:
            continue
        available = spec.provider in usable
        data.append(
            {
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
        )
    return {"object": "list", "data": data}
