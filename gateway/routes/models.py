"""The model list, in the OpenAI shape plus our own fields (provider, availability, fallbacks)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gateway.deps import CurrentUser, ServicesDep
from providers.pricing import is_priced

router = APIRouter(tags=["models"])


@router.get("/v1/models")
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
