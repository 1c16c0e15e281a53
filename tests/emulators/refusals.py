"""Which requests the emulator refuses before answering, with each provider's own 400 body."""

from __future__ import annotations

from typing import Any

from tests.emulators import anthropic_request, gemini_request, openai_request, wire
from tests.emulators.checks import Invalid


def refusal(provider: str, body: Any, model: str | None) -> tuple[str, dict[str, Any]] | None:
    """(why, the 400 body) when the real API would refuse `body`; None when it would answer."""
    try:
        if provider == "openai":
            openai_request.validate(body)
        elif provider == "anthropic":
            anthropic_request.validate(body)
        elif provider == "gemini":
            gemini_request.validate(body, model or "")
    except Invalid as bad:
        return bad.message, _body(provider, bad)
    return None


def _body(provider: str, bad: Invalid) -> dict[str, Any]:
    if provider == "openai":
        error = {"message": bad.message, "type": "invalid_request_error", "param": bad.param, "code": bad.code}
        return {"error": error}
    if provider == "anthropic":
        return wire.anthropic_error_body(400, bad.message)
    body = wire.gemini_error_body(400, bad.message)
    violation = {"field": bad.param or "", "description": bad.message}
    body["error"]["details"] = [{"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [violation]}]
    return body
