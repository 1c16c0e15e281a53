"""What the router does when an attempt fails: a pure function of the failure, what was produced, the policy and
the chain, so the whole table is tested without a provider (tests/test_failover.py).

- 429, 5xx, 529, a reset before the first token (`fast`): retry the same model while the retries and the request
  deadline allow, then the next model; after output began, the next model at once.
- No headers, no first token, a stall, our own transport timeout: the next model at once.
- A refused prefill (400) on a prefill continuation: the same model again, in instruction form.
- `auth_failed`: the next model of another provider.
- `context_length_exceeded`: the next model with a larger context window, or fail with that code.
- A content filter refusal: fail `content_filtered` (`on_refusal: "error"`), or the next model (`"fallback"`).
- The caller's bad request (400): fail `bad_request` before any output; after it, the continuation request was
  at fault, so the next model.
- Anything after output began, with `on_midstream_failure: "error"`: fail `midstream_failed`.

Moving on after output "continues" the answer, or "restarts" it when a tool call was cut in half or the request's
policy is `restart`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from providers import errors
from providers.segments import RequestForm

MidstreamPolicy = Literal["continue", "restart", "error"]
RefusalPolicy = Literal["error", "fallback"]
FallbackMode = Literal["continue", "restart"]
Action = Literal["retry", "instruction", "next", "fail"]


@dataclass(frozen=True, slots=True)
class Policy:
    """What the request asked for when a model fails."""

    midstream: MidstreamPolicy = "continue"
    on_refusal: RefusalPolicy = "error"


@dataclass(frozen=True, slots=True)
class Situation:
    """What the failed attempt leaves behind, and what the chain still offers."""

    attempt_output: bool  # this attempt sent something to the client
    text_held: bool  # the client holds answer text
    tool_open: bool  # a tool call reached the client unfinished
    form: RequestForm  # how this attempt's request carried the partial answer
    retry_wait: float | None  # the backoff's next wait if one more retry fits the retries and the deadline
    larger_window_left: bool  # a later model in the chain has a larger context window (or an unknown one)

    @property
    def has_output(self) -> bool:
        return self.text_held or self.tool_open


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    mode: FallbackMode = "continue"  # `next`: how the next model takes over
    wait: float = 0.0  # `retry`: seconds before it
    code: str = ""  # `fail`: the stream's error code
    retryable: bool = True  # `fail`: whether the same request may succeed later
    drop_provider: bool = False  # `next`: the key was refused, so no model of this provider is tried again
    larger_window: bool = False  # `next`: only a model with a larger context window may take over


def decide(failure: errors.ProviderError, s: Situation, policy: Policy) -> Decision:
    if s.has_output and policy.midstream == "error":
        return Decision("fail", code="midstream_failed")
    if s.form == "prefill" and not s.attempt_output and isinstance(failure, errors.PrefillRejected | errors.BadRequest):
        # Some models refuse an assistant prefill with a plain 400: ask again in instruction form.
        return Decision("instruction")
    if isinstance(failure, errors.AuthFailed | errors.NoCredential):
        return _next(s, policy, drop_provider=True)
    if isinstance(failure, errors.ContextLengthExceeded):
        if not s.larger_window_left:
            return Decision("fail", code=failure.code, retryable=False)
        return _next(s, policy, larger_window=True)
    if isinstance(failure, errors.ContentRefused) and policy.on_refusal == "error":
        return Decision("fail", code=failure.code, retryable=False)
    if isinstance(failure, errors.BadRequest) and not s.has_output:
        return Decision("fail", code=failure.code, retryable=False)
    if failure.fast and not s.attempt_output and s.retry_wait is not None:
        return Decision("retry", wait=s.retry_wait)
    return _next(s, policy)


def _next(s: Situation, policy: Policy, *, drop_provider: bool = False, larger_window: bool = False) -> Decision:
    restart = s.tool_open or (policy.midstream == "restart" and s.text_held)
    return Decision(
        "next", mode="restart" if restart else "continue", drop_provider=drop_provider, larger_window=larger_window
    )


BreakerVerdict = Literal["failure", "neutral"]


def breaker_verdict(failure: errors.ProviderError) -> BreakerVerdict:
    """A provider-wide fault counts against the model for everyone; one credential's failure (429, 401/403), the
    caller's request or the content filter says nothing about the model's health."""
    return "failure" if failure.provider_wide else "neutral"
