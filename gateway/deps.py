"""What routes share: the services bundle, who is calling (header or ticket), and the JSON body reader.

Routes import their helpers from here, never from one another. The caller dependencies and the body reader are
marked with the security scheme and the error codes they bring to a route's OpenAPI operation (`gateway.openapi`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, TypeAlias, TypeVar

import orjson
from fastapi import Depends, Header, Query, Request
from pydantic import BaseModel, ValidationError
from starlette.requests import HTTPConnection

from gateway.auth import VERIFY_CODES, Principal
from gateway.budgets import BudgetStatus
from gateway.errors import face_of, invalid_body
from gateway.openapi import raising
from gateway.services import Services
from gateway.tickets import REDEEM_CODES
from sessions.errors import fail
from sessions.segment_json import money

M = TypeVar("M", bound=BaseModel)

# What starting a stream can answer (the request's own limits, then `SessionManager.start`), for a route that
# starts one: `@declares(raises=STREAM_START)`.
STREAM_START = (
    "too_many_messages",
    "prompt_too_large",
    "unknown_model",
    "no_key",
    "keys_unavailable",
    "budget_exceeded",
    "too_many_streams",
    "rate_limited",
    "draining",
)
# What a route that reads or writes the database can answer when it fails (`gateway.errors.store_failure`).
STORE_FAILURES = ("store_unavailable", "unknown_user", "store_error")


def services_of(conn: HTTPConnection) -> Services:
    services: Services = conn.app.state.services
    return services


# Dependencies are `async def` even when they do not await: FastAPI runs a plain `def` dependency on a worker
# thread, a hop that costs every request more than the dependency itself.
async def get_services(conn: HTTPConnection) -> Services:
    return services_of(conn)


ServicesDep = Annotated[Services, Depends(get_services)]


# -- who is calling ---------------------------------------------------------------------------------------------------


def bearer_token(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def require_user(principal: Principal) -> Principal:
    """Streams, keys and caps belong to a user: the project's service-role key (no user) cannot have them."""
    if not principal.has_user:
        raise fail("user_required", "this acts for a user: use a user's token, not the service-role key")
    return principal


async def redeem_ticket(services: Services, ticket: str) -> Principal:
    user = await services.tickets.redeem(ticket)
    if user.expires_at is not None and user.expires_at <= time.time():
        raise fail("token_expired", "the token behind this ticket has expired")
    return user


@raising(*VERIFY_CODES, security=("bearer",))
async def current_caller(request: Request, services: ServicesDep) -> Principal:
    """A user, or the service role (which may have no user)."""
    token = bearer_token(request)
    if token is None:
        raise fail("missing_token", "send Authorization: Bearer <token>")
    return await services.auth.verify(token)


@raising("user_required")
async def current_user(caller: Annotated[Principal, Depends(current_caller)]) -> Principal:
    return require_user(caller)


@raising(*VERIFY_CODES, *REDEEM_CODES, "token_expired", security=("bearer", "ticket"))
async def caller_from_header_or_ticket(
    request: Request, services: ServicesDep, ticket: Annotated[str | None, Query(max_length=128)] = None
) -> Principal:
    """The bearer header when present (the ticket is then left unused), else the ticket."""
    token = bearer_token(request)
    if token is not None:
        return await services.auth.verify(token)
    if ticket:
        return await redeem_ticket(services, ticket)
    raise fail("missing_token", "send Authorization: Bearer <token> or ?ticket=<ticket>")


@raising("user_required")
async def user_from_header_or_ticket(caller: Annotated[Principal, Depends(caller_from_header_or_ticket)]) -> Principal:
    return require_user(caller)


# `X-Client-Id`: the client's own id for a stream it starts over HTTP, carried as `id` in every event.
ClientId = Annotated[
    str | None,
    Header(
        alias="x-client-id", min_length=1, max_length=128, description="Your id for the stream, as `id` in its events."
    ),
]


# `X-Gateway-Fallbacks`: the fallback chain for clients whose SDK cannot add a body field (the AI SDK's OpenAI and
# Anthropic providers): model ids separated by commas, empty for none.
FallbacksHeader = Annotated[
    str | None,
    Header(
        alias="x-gateway-fallbacks",
        max_length=2000,
        description="The fallback models, comma-separated (empty: none), as the body's `fallbacks` says.",
    ),
]
MAX_FALLBACKS = 8
B = TypeVar("B", bound=BaseModel)


def with_header_fallbacks(body: B, header: str | None) -> B:
    """`body` with the header's fallbacks as its `fallbacks`. Both given and differing is refused: neither is
    quietly preferred."""
    if header is None:
        return body
    names = [n.strip() for n in header.split(",") if n.strip()]
    if len(names) > MAX_FALLBACKS or any(len(n) > 200 for n in names):
        raise fail(
            "invalid_request",
            f"x-gateway-fallbacks: at most {MAX_FALLBACKS} model ids of at most 200 characters",
            details={"param": "x-gateway-fallbacks"},
        )
    given = getattr(body, "fallbacks", None)
    if given is not None and list(given) != names:
        raise fail(
            "invalid_request",
            "fallbacks: given in the body and in x-gateway-fallbacks, differently; send one",
            details={"param": "fallbacks"},
        )
    return body.model_copy(update={"fallbacks": names})


def api_key(conn: HTTPConnection) -> str | None:
    """The Anthropic SDKs' header (`x-api-key`), or a bearer token (their `auth_token`)."""
    return bearer_token(conn) or conn.headers.get("x-api-key", "").strip() or None


@raising(*VERIFY_CODES, "user_required", security=("api_key", "bearer"))
async def key_or_bearer_user(request: Request, services: ServicesDep) -> Principal:
    token = api_key(request)
    if token is None:
        raise fail("missing_token", "send x-api-key: <token> or Authorization: Bearer <token>")
    if token.startswith("sk-ant-"):
        # The gateway holds provider keys itself: a client sends the gateway's token, never its Anthropic key.
        raise fail(
            "invalid_token",
            "that is an Anthropic API key: send your gateway token (store the key with PUT /v1/keys/anthropic)",
        )
    return require_user(await services.auth.verify(token))


CurrentCaller = Annotated[Principal, Depends(current_caller)]
CurrentUser = Annotated[Principal, Depends(current_user)]
HeaderOrTicketCaller = Annotated[Principal, Depends(caller_from_header_or_ticket)]
HeaderOrTicketUser = Annotated[Principal, Depends(user_from_header_or_ticket)]
KeyOrBearerUser = Annotated[Principal, Depends(key_or_bearer_user)]


# -- the JSON body ----------------------------------------------------------------------------------------------------


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused as soon as it passes `limit` bytes (declared or sent)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise fail("request_too_large", f"the request body is over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise fail("request_too_large", f"the request body is over {limit} bytes")
    return bytes(body)


class BodyLimit:
    """Mixed into a body model to give it its own size limit (else the gateway's frame limit applies)."""

    max_body_bytes: ClassVar[int]


class UnknownFieldCode:
    """Mixed into a body model to refuse a field it does not name with this code (else `invalid_request`)."""

    unknown_field_code: ClassVar[str]


_readers: dict[type[BaseModel], Callable[..., Awaitable[Any]]] = {}


def json_body(model: type[M]) -> Callable[..., Awaitable[M]]:
    """The dependency that reads, parses (once) and validates a body into `model`; one per model."""
    found = _readers.get(model)
    if found is not None:
        return found

    async def read(request: Request, services: ServicesDep) -> M:
        limit = getattr(model, "max_body_bytes", None) or services.settings.gateway_max_frame_bytes
        raw = await read_body(request, limit)
        try:
            return model.model_validate_json(raw)
        except ValidationError as exc:
            unknown = getattr(model, "unknown_field_code", "invalid_request")
            raise invalid_body(
                list(exc.errors()), unknown_field=unknown, data=_parsed(raw), face=face_of(request)
            ) from None

    read.body_model = model  # type: ignore[attr-defined]  # read by gateway.openapi to document the body
    raising("invalid_json", "invalid_request", "request_too_large")(read)
    _readers[model] = read
    return read


def _parsed(raw: bytes) -> Any:
    """The body as JSON, to name the fields of a validation error (None when it is not JSON)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


if TYPE_CHECKING:
    T = TypeVar("T")
    JsonBody: TypeAlias = Annotated[T, "json body"]
else:

    class JsonBody:
        """`body: JsonBody[Model]`: the request body as `Model`, read with the size limit, declared in OpenAPI."""

        def __class_getitem__(cls, model: type[BaseModel]) -> Any:
            return Annotated[model, Depends(json_body(model))]


# -- spend caps -------------------------------------------------------------------------------------------------------


async def budget_status(services: Services, user_id: str) -> BudgetStatus:
    """Caps and spend as the budget guard holds streams to them (including streams the ledger took but the
    database does not have yet)."""
    status = await services.budgets.status(user_id)
    if status is None:
        raise fail("store_unavailable", "spend cannot be read right now; try again shortly")
    return status


def budget_json(status: BudgetStatus, *, spent_prefix: str = "", floor: bool = False) -> dict[str, Any]:
    """`GET /v1/budget` names the spend `today_usd`/`month_usd`; the usage report says `spent_today_usd`/... and
    never shows a negative remainder."""
    b = status.budget
    remaining = status.remaining_usd
    if floor and remaining is not None:
        remaining = max(Decimal(0), remaining)
    return {
        "daily_usd": _money(b.daily_usd if b else None),
        "monthly_usd": _money(b.monthly_usd if b else None),
        f"{spent_prefix}today_usd": money(status.today_usd),
        f"{spent_prefix}month_usd": money(status.month_usd),
        "remaining_usd": _money(remaining),
    }


def _money(v: Decimal | None) -> str | None:
    return None if v is None else money(v)
