"""The failover table (`providers/failover.py`): what follows a failure, as a pure function, row by row."""

from __future__ import annotations

import pytest

from providers import errors
from providers.failover import Decision, Policy, Situation, breaker_verdict, decide
from providers.upstream import ModelNotFound, by_status

# What the failed attempt left behind.
NOTHING = Situation(
    attempt_output=False, text_held=False, tool_open=False, form="original", retry_wait=0.3, larger_window_left=True
)
NO_RETRY_LEFT = Situation(False, False, False, "original", None, True)
MIDSTREAM = Situation(True, True, False, "original", None, True)  # the answer began on this model
CONTINUATION_FAILED_FAST = Situation(False, True, False, "instruction", 0.3, True)  # a takeover failed at once
PREFILL_CONTINUATION = Situation(False, True, False, "prefill", 0.3, True)
TOOL_CUT = Situation(True, False, True, "original", None, True)
LAST_LARGE_MODEL = Situation(False, False, False, "original", 0.3, False)

DEFAULT = Policy()
RESTART = Policy(midstream="restart")
ERROR = Policy(midstream="error")
REFUSAL_FALLBACK = Policy(on_refusal="fallback")

RETRY = Decision("retry", wait=0.3)
NEXT = Decision("next")
NEXT_RESTART = Decision("next", mode="restart")
INSTRUCTION = Decision("instruction")

TABLE: list[tuple[str, errors.ProviderError, Situation, Policy, Decision]] = [
    # fast failures before any output: the same model again while retries last, then the next one
    ("429", errors.RateLimited(), NOTHING, DEFAULT, RETRY),
    ("429 with retry-after", errors.RateLimited(retry_after=0.2), NOTHING, DEFAULT, RETRY),
    ("500", by_status(500, "boom", provider="p", model="m"), NOTHING, DEFAULT, RETRY),
    ("503", by_status(503, "busy", provider="p", model="m"), NOTHING, DEFAULT, RETRY),
    ("529", by_status(529, "overloaded", provider="p", model="m"), NOTHING, DEFAULT, RETRY),
    ("504 from upstream", by_status(504, "slow", provider="p", model="m"), NOTHING, DEFAULT, RETRY),
    ("reset before headers", errors.ConnectionLost(), NOTHING, DEFAULT, RETRY),
    ("clean end without finish", errors.Truncated(), NOTHING, DEFAULT, RETRY),
    ("retries used up", errors.ServerError(), NO_RETRY_LEFT, DEFAULT, NEXT),
    ("a continuation failing fast is retried too", errors.Overloaded(), CONTINUATION_FAILED_FAST, DEFAULT, RETRY),
    # silence: the next model at once, never a second timeout on the same one
    ("no headers / no first token", errors.Stalled(), NOTHING, DEFAULT, NEXT),
    ("our transport timeout", errors.UpstreamTimeout(), NOTHING, DEFAULT, NEXT),
    ("stall mid-stream", errors.Stalled(), MIDSTREAM, DEFAULT, NEXT),
    # after output began: continue, restart, or fail, as the request says
    ("mid-stream 5xx continues", errors.ServerError(), MIDSTREAM, DEFAULT, NEXT),
    ("mid-stream 5xx, restart policy", errors.ServerError(), MIDSTREAM, RESTART, NEXT_RESTART),
    ("mid-stream 5xx, error policy", errors.ServerError(), MIDSTREAM, ERROR, Decision("fail", code="midstream_failed")),
    ("a cut tool call restarts", errors.ConnectionLost(), TOOL_CUT, DEFAULT, NEXT_RESTART),
    # prefill refused: the same model in instruction form
    ("prefill refused", errors.PrefillRejected(), PREFILL_CONTINUATION, DEFAULT, INSTRUCTION),
    (
        "prefill refused as a plain 400",
        errors.BadRequest("prefill not supported"),
        PREFILL_CONTINUATION,
        DEFAULT,
        INSTRUCTION,
    ),
    # credentials: another provider
    ("refused key", errors.AuthFailed(), NOTHING, DEFAULT, Decision("next", drop_provider=True)),
    ("no key", errors.NoCredential(), NOTHING, DEFAULT, Decision("next", drop_provider=True)),
    ("unknown model", ModelNotFound(), NOTHING, DEFAULT, NEXT),
    # context window: a larger model, or fail with the code
    (
        "context, larger model left",
        errors.ContextLengthExceeded(),
        NOTHING,
        DEFAULT,
        Decision("next", larger_window=True),
    ),
    (
        "context, none larger",
        errors.ContextLengthExceeded(),
        LAST_LARGE_MODEL,
        DEFAULT,
        Decision("fail", code="context_length_exceeded", retryable=False),
    ),
    # content filter: reported unless the request asks to route around it
    ("refusal", errors.ContentRefused(), NOTHING, DEFAULT, Decision("fail", code="content_filtered", retryable=False)),
    ("refusal, on_refusal fallback", errors.ContentRefused(), NOTHING, REFUSAL_FALLBACK, NEXT),
    # the caller's bad request stops the chain; a continuation's does not
    ("bad request", errors.BadRequest(), NOTHING, DEFAULT, Decision("fail", code="bad_request", retryable=False)),
    ("bad continuation request", errors.BadRequest(), CONTINUATION_FAILED_FAST, DEFAULT, NEXT),
]


@pytest.mark.parametrize(
    ("failure", "situation", "policy", "expected"), [row[1:] for row in TABLE], ids=[r[0] for r in TABLE]
)
def test_failover_table(
    failure: errors.ProviderError, situation: Situation, policy: Policy, expected: Decision
) -> None:
    assert decide(failure, situation, policy) == expected


PROVIDER_WIDE = [
    errors.ServerError(),
    errors.Overloaded(),
    errors.UpstreamTimeout(),
    errors.ConnectionLost(),
    errors.Stalled(),
    errors.Truncated(),
]
ONE_CREDENTIAL_OR_REQUEST = [
    errors.RateLimited(),
    errors.AuthFailed(),
    errors.BadRequest(),
    errors.ContextLengthExceeded(),
    errors.ContentRefused(),
    errors.PrefillRejected(),
    ModelNotFound(),
]


@pytest.mark.parametrize("failure", PROVIDER_WIDE, ids=lambda e: e.code)
def test_provider_wide_faults_count_against_the_model(failure: errors.ProviderError) -> None:
    assert breaker_verdict(failure) == "failure"


@pytest.mark.parametrize("failure", ONE_CREDENTIAL_OR_REQUEST, ids=lambda e: e.code)
def test_one_credentials_or_one_requests_failures_never_do(failure: errors.ProviderError) -> None:
    assert breaker_verdict(failure) == "neutral"
