"""Our own error types. Adapters translate SDK and transport exceptions into these at the edge,
so the router decides on a small closed vocabulary instead of three SDKs' class trees."""

from __future__ import annotations


class ProviderError(Exception):
    """Base class. `code` is stable and appears in client-facing events and the ledger."""

    code = "provider_error"
    retryable = False
    # Whether trying another model (rather than the same one again) can help.
    fallback_ok = True

    def __init__(self, message: str = "", *, provider: str = "", model: str = "") -> None:
        super().__init__(message or self.code)
        self.message = message or self.code
        self.provider = provider
        self.model = model


class RateLimited(ProviderError):
    code = "rate_limited"
    retryable = True

    def __init__(
        self, message: str = "", *, retry_after: float | None = None, provider: str = "", model: str = ""
    ) -> None:
        super().__init__(message, provider=provider, model=model)
        self.retry_after = retry_after


class Overloaded(ProviderError):
    code = "overloaded"
    retryable = True


class ServerError(ProviderError):
    code = "server_error"
    retryable = True


class UpstreamTimeout(ProviderError):
    code = "timeout"
    retryable = True


class ConnectionLost(ProviderError):
    code = "connection_lost"
    retryable = True


class Stalled(ProviderError):
    """No token within the first-token or inter-token timeout."""

    code = "stalled"
    retryable = True


class Truncated(ProviderError):
    """The stream ended cleanly but without a finish reason: the answer is incomplete."""

    code = "truncated"
    retryable = True


class AuthFailed(ProviderError):
    code = "auth_failed"


class BadRequest(ProviderError):
    """The request itself is wrong (the caller's fault): retrying elsewhere will not help."""

    code = "bad_request"
    fallback_ok = False


class ContentRefused(ProviderError):
    code = "content_refused"


class PrefillRejected(ProviderError):
    """The model refused an assistant prefill; the router retries in instruction form."""

    code = "prefill_rejected"


class NoCredential(ProviderError):
    """No usable key for this provider for this user."""

    code = "no_key"
