"""The OpenAPI document (`/openapi.json`, `/docs`), generated from the routes themselves so it cannot drift.

How a route says what it does (a new route needs nothing else; `tests/test_openapi.py` runs schemathesis against
a live gateway, which fails on any answer the document does not describe):

- **Its request body**: take `body: JsonBody[Model]` (`gateway.deps`); the model is the document's body.
- **Who may call it**: take one of the caller dependencies of `gateway.deps` (`CurrentUser`, `CurrentCaller`,
  `HeaderOrTicketUser`, `HeaderOrTicketCaller`). Each is marked with `@raising(...)`, so its security scheme
  (a bearer token; or a bearer token or `?ticket=`) and the errors it raises go into every route that takes it.
- **Its JSON answer**: `response_model=Model` on the route's decorator (FastAPI then checks what it returns).
- **An answer it writes itself** (a stream, or JSON a face builds): `response_model=None` on the decorator and
  `@declares(events=..., json=Model)` under it.
- **The errors it raises itself**: `@declares(raises=(code, ...))`, stable codes of `sessions.errors.CODES`
  (`gateway.deps.STREAM_START` for a route that starts a stream). A code's kind gives its status
  (`gateway.errors.TABLE`); the body is the one of the route's face (`speaking(face)`), with the code listed.
- Parameters add `invalid_request` (422), and path parameters `not_found` (404: a value holding an encoded `/`
  matches no route).

    @router.post("/v1/things", response_model=None)
    @declares(raises=STREAM_START, events=THING_EVENTS, headers=STREAM_ID_HEADER)
    async def things(user: CurrentUser, body: JsonBody[ThingBody]) -> FollowResponse: ...
"""

from __future__ import annotations

import http
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from gateway.errors import TABLE, Face, all_routes, status_of
from sessions.errors import CODES, GatewayError

Scheme = Literal["bearer", "api_key", "ticket", "metrics_token", "none"]

SCHEMES: dict[Scheme, dict[str, Any]] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A user's Supabase access token; the project's service-role key where a route says so; in "
        "development, the token the gateway prints at start.",
    },
    "api_key": {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
        "description": "The same token as `bearer`, where the Anthropic SDKs put their key (the Messages API).",
    },
    "ticket": {
        "type": "apiKey",
        "in": "query",
        "name": "ticket",
        "description": "A single-use ticket from `POST /v1/tickets`, for clients that cannot send a header "
        "(EventSource, WebSocket). The header wins when both are sent.",
    },
    "metrics_token": {
        "type": "http",
        "scheme": "bearer",
        "description": "The operator's `GATEWAY_METRICS_TOKEN`; not needed from an address in `GATEWAY_METRICS_ALLOW`.",
    },
}

DESCRIPTION = """\
Streams from OpenAI, Anthropic and Gemini with each user's own keys, continues an answer on another model when a \
provider fails mid-answer, and records what every stream cost.

Not in this document: the WebSocket endpoint `GET /v1/ws` (several streams on one socket; its frames are in \
`docs/protocol.md`) and the pages (`/`, `/dashboard`). Errors carry a stable `code`; each response below lists the \
codes it can carry."""


@dataclass(frozen=True, slots=True)
class SSE:
    """One kind of frame of an event stream: its `event:` name ("message" for a frame without one) and what its
    `data:` is, JSON described by a model, or a fixed text."""

    name: str
    data: type[BaseModel] | str


@dataclass(frozen=True, slots=True)
class EventStream:
    """A `text/event-stream` answer: what it is, and the frames it sends."""

    description: str
    frames: tuple[SSE, ...]


@dataclass(frozen=True, slots=True)
class Declared:
    """What a route (or a dependency it takes) adds to its operation in the document."""

    raises: tuple[str, ...] = ()
    security: tuple[Scheme, ...] = ()  # any one of these will do; "none": calling without one is fine too
    events: EventStream | None = None
    json: type[BaseModel] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)  # always sent with the successful answer

    def __post_init__(self) -> None:
        unknown = [c for c in self.raises if c not in CODES]
        if unknown:
            raise ValueError(f"not documented codes: {unknown}")


F = TypeVar("F", bound=Callable[..., Any])
_MARK = "__openapi__"


def declares(
    *,
    raises: Iterable[str] = (),
    security: Iterable[Scheme] = (),
    events: EventStream | None = None,
    json: type[BaseModel] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Callable[[F], F]:
    """Marks a route (under its router decorator) or a dependency with what it adds to the document."""
    mark = Declared(tuple(raises), tuple(security), events, json, dict(headers or {}))

    def apply(fn: F) -> F:
        setattr(fn, _MARK, mark)
        return fn

    return apply


def raising(*codes: str, security: Iterable[Scheme] = ()) -> Callable[[F], F]:
    """`declares` for a dependency: the codes it raises, the security scheme it reads."""
    return declares(raises=codes, security=security)


# -- error bodies, as the document shows them (gateway.errors builds them) ----------------------------------------


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GatewayErrorDetail(_Doc):
    code: str
    message: str
    retryable: bool | SkipJsonSchema[None] = Field(None, description="Present (true) when a retry may succeed.")
    retry_after_s: float | SkipJsonSchema[None] = Field(None, ge=0, description="Wait this long before retrying.")


class GatewayErrorBody(_Doc):
    error: GatewayErrorDetail


class OpenAIErrorDetail(_Doc):
    message: str
    type: str
    param: str | None = Field(description="The request field the error is about, where there is one.")
    code: str


class OpenAIErrorBody(_Doc):
    error: OpenAIErrorDetail


class AnthropicErrorDetail(_Doc):
    type: str
    message: str


class AnthropicErrorBody(_Doc):
    type: Literal["error"]
    error: AnthropicErrorDetail


ERROR_BODIES: dict[Face, type[BaseModel]] = {
    "gateway": GatewayErrorBody,
    "openai": OpenAIErrorBody,
    "anthropic": AnthropicErrorBody,
}


def _error_schema(face: Face, codes: list[str]) -> dict[str, Any]:
    """The face's error body with `code` (and the error type, where the face has one) narrowed to these codes."""
    kinds = {CODES[c] for c in codes}
    inner: dict[str, Any] = {"code": {"enum": codes}}
    if face == "openai":
        inner["type"] = {"enum": sorted({TABLE[k].openai for k in kinds})}
    narrowed: dict[str, Any] = {"type": "object", "properties": {"error": {"type": "object", "properties": inner}}}
    if face == "anthropic":
        narrowed["properties"]["error"]["properties"] = {"type": {"enum": sorted({TABLE[k].anthropic for k in kinds})}}
    return {"allOf": [_ref(ERROR_BODIES[face].__name__), narrowed]}


def _error_headers(status: int) -> dict[str, Any]:
    text = {"type": "string"}
    if status == 401:
        return {"WWW-Authenticate": {"description": "`Bearer`", "required": True, "schema": text}}
    if status in (429, 503, 502):
        return {"Retry-After": {"description": "Seconds to wait, when known.", "schema": text}}
    return {}


# -- the document -------------------------------------------------------------------------------------------------


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _add_schema(schemas: dict[str, Any], model: type[BaseModel], mode: Literal["validation", "serialization"]) -> str:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode=mode)
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema
    return model.__name__


def _dependencies(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dep in dependant.dependencies:
        if dep.call is not None:
            yield dep.call
        yield from _dependencies(dep)


def _body_model(route: APIRoute) -> type[BaseModel] | None:
    for call in _dependencies(route.dependant):
        model = getattr(call, "body_model", None)
        if model is not None:
            return model  # type: ignore[no-any-return]
    return None


def _declared(route: APIRoute) -> Declared:
    """The route's own declaration merged with those of every dependency it takes."""
    marks = [getattr(call, _MARK, None) for call in (*_dependencies(route.dependant), route.endpoint)]
    found = [m for m in marks if isinstance(m, Declared)]
    own = getattr(route.endpoint, _MARK, Declared())
    raises = [c for m in found for c in m.raises]
    security = [s for m in found for s in m.security]
    if route.dependant.path_params or route.dependant.query_params or route.dependant.header_params:
        raises.append("invalid_request")
    if route.dependant.path_params:
        raises.append("not_found")
    return Declared(tuple(dict.fromkeys(raises)), tuple(dict.fromkeys(security)), own.events, own.json, own.headers)


def _answer(op: dict[str, Any], route: APIRoute, decl: Declared, schemas: dict[str, Any]) -> None:
    ok = op["responses"][str(route.status_code or 200)]
    if decl.events is not None or decl.json is not None:
        content: dict[str, Any] = {}
        if decl.json is not None:
            content["application/json"] = {"schema": _ref(_add_schema(schemas, decl.json, "serialization"))}
        if decl.events is not None:
            content["text/event-stream"] = {"schema": _events_schema(decl.events, schemas)}
        ok["content"] = content
    if decl.headers:
        ok["headers"] = {
            name: {"description": text, "required": True, "schema": {"type": "string"}}
            for name, text in decl.headers.items()
        }


def _events_schema(stream: EventStream, schemas: dict[str, Any]) -> dict[str, Any]:
    """One event of the stream (OpenAPI 3.1: the schema of an event stream describes each event), by its name."""
    kinds = []
    for frame in stream.frames:
        data: dict[str, Any]
        if isinstance(frame.data, str):
            data = {"const": frame.data}
        else:
            name = _add_schema(schemas, frame.data, "serialization")
            data = {"type": "string", "contentMediaType": "application/json", "contentSchema": _ref(name)}
        kinds.append({"properties": {"event": {"const": frame.name}, "data": data}})
    return {
        "type": "object",
        "description": stream.description,
        "required": ["data", "event"],
        "properties": {"event": {"type": "string"}, "data": {"type": "string"}, "id": {"type": "string"}},
        "anyOf": kinds,
    }


PHRASES = {529: "Overloaded"}  # Anthropic's status for an upstream that cannot take more, not in http.HTTPStatus


def _errors(op: dict[str, Any], route: APIRoute, decl: Declared, schemas: dict[str, Any]) -> None:
    face: Face = getattr(route, "error_face", "gateway")
    responses: dict[str, Any] = op["responses"]
    responses.pop("422", None)  # FastAPI's own validation body, which the gateway never sends
    by_status: dict[int, list[str]] = {}
    for code in decl.raises:
        status = status_of(GatewayError(CODES[code], code, ""), face)
        by_status.setdefault(status, []).append(code)
    if by_status:
        _add_schema(schemas, ERROR_BODIES[face], "serialization")
    for status, codes in sorted(by_status.items()):
        codes.sort()
        listed = ", ".join(f"`{c}`" for c in codes)
        answer: dict[str, Any] = {
            "description": f"{PHRASES.get(status) or http.HTTPStatus(status).phrase}: {listed}",
            "content": {"application/json": {"schema": _error_schema(face, codes)}},
        }
        headers = _error_headers(status)
        if headers:
            answer["headers"] = headers
        responses[str(status)] = answer


def _security(op: dict[str, Any], decl: Declared, used: set[Scheme]) -> None:
    if not decl.security:
        return
    op["security"] = [{} if s == "none" else {s: []} for s in decl.security]
    used.update(s for s in decl.security if s != "none")
    if "ticket" in decl.security:  # the scheme is the parameter
        op["parameters"] = [p for p in op.get("parameters", []) if not (p["in"] == "query" and p["name"] == "ticket")]


def build(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(title=app.title, version=app.version, description=DESCRIPTION, routes=app.routes)
    components: dict[str, Any] = doc.setdefault("components", {})
    schemas: dict[str, Any] = components.setdefault("schemas", {})
    used: set[Scheme] = set()
    for route in all_routes(app.routes):
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        decl = _declared(route)
        body = _body_model(route)
        for method in route.methods or ():
            op = doc["paths"][route.path_format][method.lower()]
            if body is not None:
                ref = _ref(_add_schema(schemas, body, "validation"))
                op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref}}}
            _answer(op, route, decl, schemas)
            _errors(op, route, decl, schemas)
            _security(op, decl, used)
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    if used:
        components["securitySchemes"] = {name: SCHEMES[name] for name in sorted(used)}
    return doc


def document(app: FastAPI) -> None:
    """Serve `build(app)` as the app's document (built once, on the first request for it)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
