"""The edge of the error family: one table from an error's kind to what each face shows, one body per face.

- `TABLE`: kind -> HTTP status, WebSocket close code (for failures at the handshake; `None` where the kind only
  ever reaches a socket as an `error` frame), OpenAI error `type`, Anthropic error `type`, and the status the
  provider-API faces answer with where it differs (their SDKs expect 400 for a body that fails validation).
- Bodies: the gateway's own `{"error": {code, message, retryable?, retry_after_s?}}`; the OpenAI body
  `{"error": {message, type, param, code}}` (`param` from the error's `details`); the Anthropic body
  `{"type": "error", "error": {type, message}}`.
  (The WebSocket `error` frame is an event: `sessions.events`.)
- Statuses: the table's, but the Anthropic face answers 400 and 529 where the Messages API does (`ANTHROPIC_STATUS`).
- Headers: `Retry-After` when a limit or an upstream said when to retry, `WWW-Authenticate` on 401, `Allow` on 405.

Which body an HTTP route answers with is the route's face: a route class from `speaking(face)` marks it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route

from gateway.stores.base import StoreError, StoreUnavailable, UnknownUser
from sessions.errors import GatewayError, Kind, fail

log = logging.getLogger("gateway.http")

Face = Literal["gateway", "openai", "anthropic"]


@dataclass(slots=True, frozen=True)
class Row:
    status: int
    close: int | None  # WebSocket close code when it happens at the handshake
    openai: str
    anthropic: str
    api_status: int | None = None  # on the OpenAI and Anthropic faces, when not `status`


CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN_ORIGIN = 4403
CLOSE_SERVICE_RESTART = 1012

TABLE: dict[Kind, Row] = {
    "invalid": Row(422, None, "invalid_request_error", "invalid_request_error", 400),
    "bad_request": Row(400, None, "invalid_request_error", "invalid_request_error"),
    "unauthorized": Row(401, CLOSE_UNAUTHORIZED, "authentication_error", "authentication_error"),
    "role_refused": Row(403, CLOSE_UNAUTHORIZED, "permission_error", "permission_error"),
    "forbidden": Row(403, CLOSE_FORBIDDEN_ORIGIN, "permission_error", "permission_error"),
    "not_found": Row(404, None, "not_found_error", "not_found_error"),
    "method_not_allowed": Row(405, None, "invalid_request_error", "invalid_request_error"),
    "conflict": Row(409, None, "invalid_request_error", "invalid_request_error"),
    "gone": Row(410, None, "invalid_request_error", "invalid_request_error"),
    "too_large": Row(413, None, "invalid_request_error", "request_too_large"),
    "payment_required": Row(402, None, "insufficient_quota", "billing_error"),
    "limited": Row(429, None, "rate_limit_error", "rate_limit_error"),
    "unavailable": Row(503, CLOSE_SERVICE_RESTART, "server_error", "overloaded_error"),
    "auth_unavailable": Row(503, CLOSE_UNAUTHORIZED, "server_error", "api_error"),
    "upstream": Row(502, None, "server_error", "api_error"),
    "internal": Row(500, None, "server_error", "api_error"),
}


# Where the Messages API's statuses differ from the table's: a body that does not validate is a 400, and an
# overloaded service answers 529 (`overloaded_error`), which the Anthropic SDKs retry.
ANTHROPIC_STATUS: dict[Kind, int] = {"invalid": 400, "unavailable": 529}


def gateway_body(err: GatewayError) -> dict[str, Any]:
    inner: dict[str, Any] = {"code": err.code, "message": err.message}
    if err.retryable:
        inner["retryable"] = True
    if err.retry_after_s is not None:
        inner["retry_after_s"] = round(err.retry_after_s, 3)
    return {"error": inner}


def openai_body(err: GatewayError) -> dict[str, Any]:
    param = (err.details or {}).get("param")
    return {
        "error": {
            "message": err.message,
            "type": TABLE[err.kind].openai,
            "param": param if isinstance(param, str) else None,
            "code": err.code,
        }
    }


def anthropic_body(err: GatewayError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": TABLE[err.kind].anthropic, "message": err.message}}


BODIES = {"gateway": gateway_body, "openai": openai_body, "anthropic": anthropic_body}


def error_headers(err: GatewayError) -> dict[str, str]:
    headers: dict[str, str] = {}
    if err.retry_after_s is not None:
        headers["retry-after"] = str(max(1, math.ceil(err.retry_after_s)))
    if err.kind == "unauthorized":
        headers["www-authenticate"] = "Bearer"
    allow = (err.details or {}).get("allow")
    if isinstance(allow, str):
        headers["allow"] = allow
    return headers


def error_response(err: GatewayError, face: Face = "gateway") -> Response:
    """The HTTP answer for an error, in the body shape of the face that was asked."""
    return Response(
        orjson.dumps(BODIES[face](err)),
        status_code=status_of(err, face),
        media_type="application/json",
        headers=error_headers(err),
    )


def speaking(face: Face) -> type[APIRoute]:
    """A route class whose errors are answered in `face`'s body shape (`APIRouter(route_class=...)`)."""
    return type(f"{face.title()}Route", (APIRoute,), {"error_face": face})


def face_of(request: Request) -> Face:
    face: Face = getattr(request.scope.get("route"), "error_face", "gateway")
    return face


_TAGS = ("role", "type")  # the discriminator fields of the bodies' unions


def field_path(loc: Any, data: Any = None, *, dotted: bool = False) -> str:
    """A validation error's location as clients name a field: `messages[0].content` (OpenAI's way), or
    `messages.0.content` with `dotted` (Anthropic's).

    With the body's `data`, the labels pydantic adds for unions (a discriminator's tag, a member's type) are left
    out by walking the data: a part that names nothing in it is such a label (but the last, which may name a
    missing field)."""
    parts = [p for p in loc if p != "body"]
    out: list[str] = []
    node, tagged = data, False
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if data is not None and _is_label(node, part, last, tagged):
            tagged = True
            continue
        index = f".{part}" if dotted else f"[{part}]"
        out.append(index if isinstance(part, int) else (f".{part}" if out else str(part)))
        node, tagged = _child(node, part), False
    return "".join(out)


def _is_label(node: Any, part: Any, last: bool, tagged: bool) -> bool:
    if isinstance(node, dict):
        if not tagged and any(node.get(t) == part for t in _TAGS):
            return True
        return not last and part not in node
    return isinstance(part, str) and not (last and node is None)


def _child(node: Any, part: Any) -> Any:
    if isinstance(node, dict):
        return node.get(part)
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return None


def invalid_body(
    errors: list[Any], *, unknown_field: str = "invalid_request", data: Any = None, face: Face = "gateway"
) -> GatewayError:
    """A validation failure as the invalid kind: `invalid_json` when it did not parse, else `invalid_request`; a
    field the body may not have gets the code `unknown_field` (the SDK faces say `unsupported_parameter`). Only
    the field and the rule are named, never the submitted value; the field is also the error's `param`."""
    if any(e.get("type") == "json_invalid" for e in errors):
        bad = errors[0]
        return fail("invalid_json", f"{field_path(bad.get('loc', ())) or 'body'}: {bad.get('msg', 'invalid')}")
    # Of a union's errors, one per member, an unknown field is the one that says what is wrong; else the deepest,
    # which is about what the client wrote (not "should be a string" for a list it meant as content parts).
    extra = [e for e in errors if e.get("type") == "extra_forbidden"]
    first: dict[str, Any] = extra[0] if extra else max(errors, key=lambda e: len(e.get("loc", ())), default={})
    where = field_path(first.get("loc", ()), data, dotted=face == "anthropic") or "body"
    if extra and unknown_field != "invalid_request":
        return fail(unknown_field, f"{where}: not a parameter the gateway takes", details={"param": where})
    return fail("invalid_request", f"{where}: {first.get('msg', 'invalid')}", details={"param": where})


def store_failure(exc: Exception) -> GatewayError:
    """A store's refusal or outage as the client sees it (the store's own exceptions stay inside)."""
    if isinstance(exc, StoreUnavailable):
        return fail("store_unavailable", "the database is unreachable right now; try again shortly")
    if isinstance(exc, UnknownUser):
        return fail("unknown_user", "your account is not known to the database")
    return fail("store_error", "the database refused the request")


def all_routes(routes: list[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route, also those of included routers (FastAPI keeps them nested under the router they came in)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from all_routes(inner.routes)
        else:
            yield route


def _allowed_methods(request: Request, exc: HTTPException) -> str:
    """Every method some route takes at this path (routes are declared one per method)."""
    methods = {m.strip() for m in (exc.headers or {}).get("Allow", "").split(",") if m.strip()}
    probe = {**request.scope, "method": "\0"}
    for route in all_routes(request.app.router.routes):
        if isinstance(route, Route) and route.matches(probe)[0] is Match.PARTIAL:
            methods |= route.methods or set()
    return ", ".join(sorted(methods))


def _from_http(request: Request, exc: HTTPException) -> GatewayError:
    if exc.status_code == 404:
        return fail("not_found", "no such route")
    if exc.status_code == 405:
        allow = _allowed_methods(request, exc)
        return fail("method_not_allowed", f"use {allow}", details={"allow": allow})
    if exc.status_code == 413:
        return fail("request_too_large", str(exc.detail))
    return GatewayError("internal" if exc.status_code >= 500 else "bad_request", "http_error", str(exc.detail))


def install_error_handlers(app: FastAPI) -> None:
    async def on_gateway(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        return error_response(exc, face_of(request))

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        face = face_of(request)
        return error_response(invalid_body(list(exc.errors()), face=face), face)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_response(_from_http(request, exc), face_of(request))

    async def on_disconnect(request: Request, exc: Exception) -> Response:
        # The client went away while sending its body: nobody is left to answer, and nothing went wrong here.
        log.debug("client disconnected while sending its body", extra={"path": request.url.path})
        return Response(status_code=400)

    async def on_store(request: Request, exc: Exception) -> Response:
        return error_response(store_failure(exc), face_of(request))

    app.add_exception_handler(GatewayError, on_gateway)
    app.add_exception_handler(StoreUnavailable, on_store)
    app.add_exception_handler(StoreError, on_store)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(ClientDisconnect, on_disconnect)


def status_of(err: GatewayError, face: Face = "gateway") -> int:
    """The HTTP status a client of `face` gets for this error."""
    row = TABLE[err.kind]
    if face == "anthropic" and err.kind in ANTHROPIC_STATUS:
        return ANTHROPIC_STATUS[err.kind]
    return row.api_status if face != "gateway" and row.api_status is not None else row.status
