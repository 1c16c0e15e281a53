"""GET /metrics in Prometheus text format: for allowed addresses, or with the operator's metrics token."""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import APIRouter, Request
from starlette.responses import PlainTextResponse, Response

from gateway.deps import ServicesDep, bearer_token
from gateway.openapi import declares
from sessions.errors import fail

router = APIRouter(tags=["operations"])


def _address_allowed(host: str | None, allow: str) -> bool:
    if host is None:
        return False
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    for item in allow.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            if addr in ipaddress.ip_network(item, strict=False):
                return True
        except ValueError:
            continue
    return False


@router.get("/metrics", response_model=None, response_class=PlainTextResponse)
@declares(raises=("metrics_forbidden",), security=("none", "metrics_token"))
async def metrics(request: Request, services: ServicesDep) -> Response:
    s = services.settings
    token = bearer_token(request)
    expected = s.gateway_metrics_token.get_secret_value() if s.gateway_metrics_token else None
    by_token = token is not None and expected is not None and hmac.compare_digest(token, expected)
    client = request.client.host if request.client else None
    if not (by_token or _address_allowed(client, s.gateway_metrics_allow)):
        raise fail("metrics_forbidden", "metrics are for allowed addresses or the operator token")
    return PlainTextResponse(services.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
