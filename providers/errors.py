"""Our own error types. Adapters translate SDK and transport exceptions into these at the edge,
so the router decides on a small closed vocabulary instead of three SDKs' class trees.

Two class attributes feed the failover table (`providers/failover.py`) and the circuit breaker:
- `fast`: a quick failure that a retry of the same model may get past (429, 5xx, 529, a reset before the
  first byte). Silence (no headers, no first token, a stall) is not fast: waiting again costs another timeout.
- `provider_wide`: it says something about the model's health for everyone (the breaker's input). A rate
  limit or a refused key is one credential's problem, whoever's key it is.
"""

from __future__ import annotations

import re


class ProviderError(Exception):
    """Base class. `code` is stable and appears in client-facing events and the ledger.

    `provider_code` is the upstream's own code for the failure (OpenAI's `error.code` or `type`, Anthropic's
    `error.type`, Gemini's `status`) when the upstream said something; `message` is then the upstream's message.
    """

    code = "provider_error"
    retryable = False
    fast = False
    provider_wide = False

    def __init__(
        self, message: str = "", *, provider: str = "", model: str = "", provider_code: str | None = None
    ) -> None:
        super().__init__(message or self.code)
        self.message = message or self.code
        self.provider = provider
        self.model = model
        self.provider_code = provider_code


class RateLimited(ProviderError):
    code = "rate_limited"
    retryable = True
    fast = True

    def __init__(
        self,
        message: str = "",
        *,
        retry_after: float | None = None,
        provider: str = "",
        model: str = "",
        provider_code: str | None = None,
    ) -> None:
        super().__init__(message, provider=provider, model=model, provider_code=provider_code)
        self.retry_after = retry_after


class Overloaded(ProviderError):
    code = "overloaded"
    retryable = True
    fast = True
    provider_wide = True


class ServerError(ProviderError):
    code = "server_error"
    retryable = True
    fast = True
    provider_wide = True


class UpstreamTimeout(ProviderError):
    """A timeout: the upstream's own (HTTP 408/504, `fast`) or ours on the transport (not fast)."""

    code = "timeout"
    retryable = True
    provider_wide = True

    def __init__(
        self,
        message: str = "",
        *,
        provider: str = "",
        model: str = "",
        provider_code: str | None = None,
        fast: bool = False,
    ) -> None:
        super().__init__(message, provider=provider, model=model, provider_code=provider_code)
        self.fast = fast


class ConnectionLost(ProviderError):
    code = "connection_lost"
    retryable = True
    fast = True
    provider_wide = True


class Stalled(ProviderError):
    """No response or no token within the first-token timeout, or a gap over the inter-token timeout."""

    code = "stalled"
    retryable = True
    provider_wide = True


class Truncated(ProviderError):
    """The stream ended cleanly but without a finish reason: the answer is incomplete."""

    code = "truncated"
    retryable = True
    fast = True
    provider_wide = True


class AuthFailed(ProviderError):
    code = "auth_failed"


class BadRequest(ProviderError):
    """The request itself is wrong (the caller's fault): retrying elsewhere will not help."""

    code = "bad_request"


class ContextLengthExceeded(ProviderError):
    """The prompt (plus the output asked for) does not fit the model's context window: a larger model may."""

    code = "context_length_exceeded"


class ContentRefused(ProviderError):
    """The provider's content filter refused the request."""

    code = "content_filtered"


class PrefillRejected(ProviderError):
    """The model refused an assistant prefill; the router retries in instruction form."""

    code = "prefill_rejected"


class NoCredential(ProviderError):
    """No usable key for this provider for this user."""

    code = "no_key"


# Longest upstream message passed on; anything shaped like a key is masked first.
MAX_MESSAGE_CHARS = 300
_KEYLIKE = re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_*-]{6,}|\bAIza[0-9A-Za-z_-]{10,}|\bBearer\s+\S+", re.IGNORECASE)


def upstream_detail(failure: ProviderError, secret: str = "") -> tuple[str | None, str | None]:
    """The upstream's own code and message for a failure, safe to show: the caller's key (or anything that looks
    like one) masked, long messages cut. Both None when the failure was ours (a stall, a cut connection)."""
    if failure.provider_code is None:
        return None, None
    message = failure.message.replace(secret, "[key]") if secret else failure.message
    message = _KEYLIKE.sub("[key]", message)
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 1] + "…"
    return failure.provider_code[:100], message
