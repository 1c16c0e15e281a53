"""`x-request-id` on every response of the gateway (HTTP and the WebSocket handshake): a fresh id a client can
quote when it reports a problem, as OpenAI's and Anthropic's APIs give one. Also kept in the request's scope
(`scope["state"]["request_id"]`) for whatever wants to log it. One random token per request, nothing per token.

The middleware wraps `send` to add the header to the response's start. Every wrapper inside it (Starlette's
exception handling, FastAPI's body limit, CORS) likewise acts on the start only, so a streaming response sends
its body messages with `body_send(scope, send)`: the server's own `send`, beneath every wrapper, which keeps
them off the per-token path. A middleware that rewrote body messages would have to go outside this one."""

from __future__ import annotations

import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-request-id"
_BODY_SEND = "gateway.body_send"
_STARTS = ("http.response.start", "websocket.accept")


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


def body_send(scope: Scope, send: Send) -> Send:
    """The `send` for body messages (`http.response.body`, `websocket.send`) once the response has started through
    `send`; `send` itself where the middleware is not installed (a bare app in a test)."""
    raw: Send | None = scope.get(_BODY_SEND)
    return raw if raw is not None else send


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = new_request_id()
        scope.setdefault("state", {})["request_id"] = rid
        scope[_BODY_SEND] = send
        header = (HEADER, rid.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] in _STARTS:
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        await self.app(scope, receive, send_with_id)
