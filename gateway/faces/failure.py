"""A stream's `error` event (or a drain) as the error a face answers with.

Its kind is its code's, except for a stream that ended because every model it tried was busy: when each of them
answered with a rate limit it is `limited` (HTTP 429 with `Retry-After`), when each was overloaded (or its circuit
was open) it is `unavailable`. A client then backs off and tries again, as it would with the provider itself,
instead of treating the gateway as broken. The code (`all_models_failed`) and the message stay as they are.
"""

from __future__ import annotations

from sessions.errors import GatewayError, Kind, fail, kind_of
from sessions.events import Draining, Error

_BUSY = frozenset({"rate_limited", "overloaded", "circuit_open"})


def _busy_kind(ev: Error) -> Kind | None:
    tried = [a.reason for a in ev.attempts or () if a.segment is not None or a.reason == "circuit_open"]
    if ev.code != "all_models_failed" or not tried or not set(tried) <= _BUSY:
        return None
    return "limited" if "rate_limited" in tried else "unavailable"


def error_of(ev: Error | Draining) -> GatewayError:
    if isinstance(ev, Draining):
        return fail("draining", ev.message)
    kind = _busy_kind(ev) or kind_of(ev.code)
    return GatewayError(kind, ev.code, ev.message, retryable=ev.retryable, retry_after_s=ev.retry_after_s)
