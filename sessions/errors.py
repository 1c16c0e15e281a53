"""Every error a client can get, as one type: a kind (what sort of failure), a stable code and a message.

A leaf module, so every layer may raise it. The edge (`gateway/errors.py`) maps a kind to what each face shows:
an HTTP status, a WebSocket close code, an OpenAI error type. Nothing here knows about HTTP.

`CODES` names every stable code with its kind: the documentation's code table is checked against it, and an
`error` event (which carries only a code on the wire) finds its kind there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

Kind = Literal[
    "invalid",  # the body or frame does not parse or does not match the schema
    "bad_request",  # well formed, but not something the gateway (or the provider) can do
    "unauthorized",  # no credential, or one that is refused
    "role_refused",  # a valid credential whose role may not use the gateway
    "forbidden",  # authenticated, but not allowed to do this
    "not_found",
    "method_not_allowed",
    "conflict",
    "gone",  # was there, is no longer kept
    "too_large",
    "payment_required",  # a spend cap is reached
    "limited",  # a rate or concurrency limit: retry later
    "unavailable",  # this gateway (or its database) cannot serve it right now
    "auth_unavailable",  # the credential cannot be checked right now
    "upstream",  # the providers failed
    "internal",
]

KINDS: tuple[Kind, ...] = Kind.__args__  # type: ignore[attr-defined]


class GatewayError(Exception):
    """A failure the client is told about. `code` is stable and documented; `message` never echoes a secret."""

    def __init__(
        self,
        kind: Kind,
        code: str,
        message: str,
        *,
        retryable: bool = False,
        retry_after_s: float | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.kind: Kind = kind
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.details = details

    def __repr__(self) -> str:
        return f"GatewayError({self.kind!r}, {self.code!r}, {self.message!r})"


# Every stable code and its kind. `fail(code, message)` builds the error from here.
CODES: dict[str, Kind] = {
    # bodies and frames
    "invalid_json": "invalid",
    "invalid_frame": "invalid",
    "invalid_request": "invalid",
    "unknown_type": "invalid",
    "unsupported_parameter": "bad_request",  # a field the gateway (or the model) cannot honour, named in `param`
    "invalid_cursor": "bad_request",
    "frame_too_large": "too_large",
    "request_too_large": "too_large",
    "too_many_messages": "too_large",
    "prompt_too_large": "too_large",
    "duplicate_id": "conflict",
    "user_mismatch": "forbidden",
    # limits
    "rate_limited": "limited",
    "too_many_streams": "limited",
    "budget_exceeded": "payment_required",
    # streams
    "unknown_model": "not_found",
    "no_key": "forbidden",
    "keys_unavailable": "unavailable",
    "stream_not_found": "not_found",
    "resume_too_old": "gone",
    "stream_owner_lost": "unavailable",
    "draining": "unavailable",
    "all_models_failed": "upstream",
    "all_models_rate_limited": "limited",  # every model asked answered 429: retry after `retry_after_s`
    "midstream_failed": "upstream",
    "bad_request": "bad_request",
    "context_length_exceeded": "bad_request",
    "content_filtered": "bad_request",
    "invalid_parameter": "bad_request",
    "response_not_found": "not_found",
    # credentials
    "missing_token": "unauthorized",
    "invalid_token": "unauthorized",
    "token_expired": "unauthorized",
    "token_not_yet_valid": "unauthorized",
    "invalid_signature": "unauthorized",
    "invalid_algorithm": "unauthorized",
    "invalid_audience": "unauthorized",
    "invalid_issuer": "unauthorized",
    "unknown_key": "unauthorized",
    "invalid_ticket": "unauthorized",
    "ticket_used": "unauthorized",
    "ticket_expired": "unauthorized",
    "anon_refused": "role_refused",
    "invalid_role": "role_refused",
    "auth_unavailable": "auth_unavailable",
    "user_required": "forbidden",
    # other endpoints
    "forbidden": "forbidden",
    "metrics_forbidden": "forbidden",
    "origin_forbidden": "forbidden",
    "unknown_provider": "not_found",
    "key_not_found": "not_found",
    "store_unavailable": "unavailable",
    "unknown_user": "conflict",
    "store_error": "internal",
    "not_found": "not_found",
    "method_not_allowed": "method_not_allowed",
    "http_error": "bad_request",
}

# Kinds whose errors are worth retrying unless a caller says otherwise.
_RETRYABLE: frozenset[Kind] = frozenset({"limited", "unavailable", "auth_unavailable", "upstream"})


def kind_of(code: str) -> Kind:
    """The kind of a documented code; a code from elsewhere (a provider's) counts as an upstream failure."""
    return CODES.get(code, "upstream")


def fail(
    code: str,
    message: str,
    *,
    retryable: bool | None = None,
    retry_after_s: float | None = None,
    details: Mapping[str, Any] | None = None,
) -> GatewayError:
    """The error for a documented code: its kind from `CODES`, retryable as the kind suggests unless told."""
    kind = CODES[code]
    return GatewayError(
        kind,
        code,
        message,
        retryable=kind in _RETRYABLE if retryable is None else retryable,
        retry_after_s=retry_after_s,
        details=details,
    )


def stream_not_found() -> GatewayError:
    # Another user's stream looks exactly like a missing one.
    return fail("stream_not_found", "no such stream")


def resume_too_old(message: str = "the stream's events are no longer kept") -> GatewayError:
    return fail("resume_too_old", message)
