"""What each kind of failure leads to, through the real SDKs against the emulator: silence moves on after one
timeout, a prompt too long moves to a model with a larger window, a content-filter refusal is reported (or routed
around when the request asks), and every attempt carries the provider's own code and message."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import pytest

from providers.breaker import NoBreaker
from providers.router import FallbackStarted, ModelSkipped, Router, RouterDone, SegmentEnded
from tests.emulators import Emulator, Script, wire
from tests.support.fallback import CATALOG, FIRST, PROVIDERS, REQUEST, OperatorKeys, requests_for
from tests.support.scripted import Outcome, run

pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")

TIMEOUT_S = 1.0
ANSWER = ("Foxes", " are", " small", " omnivores.")


def others(provider: str) -> list[str]:
    return [p for p in PROVIDERS if p != provider]


def segments(out: Outcome) -> list[Any]:
    return [e.segment for e in out.of(SegmentEnded)]


@pytest.fixture
def router(emu: Emulator, adapters: dict[str, Any]) -> Router:
    emu.reset()
    # Retries as configured by default (two): silence must not use them.
    return Router(adapters, breaker=NoBreaker(), first_token_timeout_s=TIMEOUT_S, inter_token_timeout_s=TIMEOUT_S)


# -- silence: one timeout, then the next model ---------------------------------------------------------------------

SILENCES = {
    "no response headers": Script(first_delay=60),
    "headers, then no first token": Script(text=ANSWER, stall_after=0),
    "a stall mid-stream": Script(text=ANSWER, stall_after=2),
}


@pytest.mark.parametrize("silence", list(SILENCES))
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_silent_model_costs_one_timeout_then_the_next_model_answers(
    emu: Emulator, router: Router, provider: str, silence: str
) -> None:
    # The catalog gives reasoning models two minutes for their first token; this test's model gets the timeout.
    first = replace(CATALOG.resolve(FIRST[provider]), first_token_timeout=None, inter_token_timeout=None)
    second = CATALOG.resolve(FIRST[others(provider)[0]])
    emu.script(SILENCES[silence], model=first.upstream)
    emu.script(Script(text=(" They", " hunt", " at", " dusk.")), model=second.upstream)

    began = time.monotonic()
    async with asyncio.timeout(10):
        out = await run(router, [first, second], REQUEST, OperatorKeys())
    took = time.monotonic() - began

    assert out.error is None, out.error
    (asked,) = requests_for(emu, first.upstream)  # asked once: never retried after a timeout
    (fallback,) = requests_for(emu, second.upstream)
    assert await emu.wait_disconnect(asked)  # and hung up on
    assert [(s.model, s.status, s.reason) for s in segments(out)] == [
        (first.id, "failed", "stalled"),
        (second.id, "ok", None),
    ]
    # The fallback was asked one timeout after the first request was sent (the router's own clock), and the answer
    # took one timeout plus the fallback's own time: both upper bounds fail with a second timeout.
    failed, answered = segments(out)
    assert TIMEOUT_S <= answered.sent_at - failed.sent_at < 2 * TIMEOUT_S
    assert fallback.started >= asked.started
    assert TIMEOUT_S <= took < 1.8 * TIMEOUT_S


async def test_fast_failures_are_retried_on_the_same_model(emu: Emulator, router: Router) -> None:
    first, second = CATALOG.resolve("gpt-5-mini"), CATALOG.resolve("claude-sonnet-4-5")
    emu.script(Script(status=429), Script(status=503), Script(text=ANSWER), model=first.upstream)
    out = await run(router, [first, second], REQUEST, OperatorKeys())
    assert out.text == "".join(ANSWER)
    assert [(s.model, s.reason, s.retry) for s in segments(out)] == [
        (first.id, "rate_limited", 0),
        (first.id, "overloaded", 1),
        (first.id, None, 2),
    ]
    assert requests_for(emu, second.upstream) == []
    assert [(s.provider_code, s.provider_message) for s in segments(out)[:2]] == [
        ("rate_limit_exceeded", "Rate limit reached for requests (emulated)."),
        ("server_error", "That model is currently overloaded with other requests (emulated)."),
    ]


# -- a prompt over the context window ---------------------------------------------------------------------------

CONTEXT_CODES = {
    "openai": "context_length_exceeded",
    "anthropic": "invalid_request_error",
    "gemini": "INVALID_ARGUMENT",
}


def context_message(provider: str) -> str:
    body = wire.CONTEXT_LENGTH_ERRORS[provider][1]
    return str(body["error"]["message"])


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_prompt_too_long_moves_to_a_model_with_a_larger_window(
    emu: Emulator, router: Router, provider: str
) -> None:
    small_p, large_p = others(provider)
    failing = replace(CATALOG.resolve(FIRST[provider]), context_window=200_000)
    smaller = replace(CATALOG.resolve(FIRST[small_p]), context_window=100_000)
    larger = replace(CATALOG.resolve(FIRST[large_p]), context_window=1_000_000)
    emu.script(Script(error_kind="context_length"), model=failing.upstream)
    emu.script(Script(text=ANSWER), model=larger.upstream)

    out = await run(router, [failing, smaller, larger], REQUEST, OperatorKeys())

    assert out.error is None and out.text == "".join(ANSWER)
    assert requests_for(emu, smaller.upstream) == []  # its window is smaller still: not asked
    assert [(s.model.id, s.reason, s.announced) for s in out.of(ModelSkipped)] == [
        (smaller.id, "context_too_small", False)
    ]
    (fb,) = out.of(FallbackStarted)
    assert (fb.from_model, fb.to_model, fb.reason) == (failing.id, larger.id, "context_length_exceeded")
    (seg, _ok) = segments(out)
    assert (seg.reason, seg.provider_code, seg.provider_message) == (
        "context_length_exceeded",
        CONTEXT_CODES[provider],
        context_message(provider),
    )
    assert len(requests_for(emu, failing.upstream)) == 1  # not retried: the same prompt would not fit again


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_prompt_too_long_for_every_model_fails_with_that_code(
    emu: Emulator, router: Router, provider: str
) -> None:
    failing = replace(CATALOG.resolve(FIRST[provider]), context_window=200_000)
    smaller = replace(CATALOG.resolve(FIRST[others(provider)[0]]), context_window=100_000)
    emu.script(Script(error_kind="context_length"), model=failing.upstream)
    out = await run(router, [failing, smaller], REQUEST, OperatorKeys())
    assert out.error is not None
    assert (out.error.code, out.error.retryable) == ("context_length_exceeded", False)
    assert [(a.model, a.reason, a.provider_code, a.provider_message) for a in out.error.attempts] == [
        (failing.id, "context_length_exceeded", CONTEXT_CODES[provider], context_message(provider))
    ]
    assert CONTEXT_CODES[provider] in str(out.error) and context_message(provider) in str(out.error)
    assert requests_for(emu, smaller.upstream) == []


# -- content filters --------------------------------------------------------------------------------------------

# How each API says its filter refused the request: OpenAI a 400 `invalid_prompt`, Gemini a blocked prompt, Anthropic
# a stream that stops with `refusal` before any text.
REFUSAL_CODES = {"openai": "invalid_prompt", "gemini": wire.GEMINI_BLOCK_REASON, "anthropic": "refusal"}


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_refusal_is_reported_as_what_it_is(emu: Emulator, router: Router, provider: str) -> None:
    first, second = CATALOG.resolve(FIRST[provider]), CATALOG.resolve(FIRST[others(provider)[0]])
    emu.script(Script(error_kind="refusal"), model=first.upstream)
    out = await run(router, [first, second], REQUEST, OperatorKeys())
    assert requests_for(emu, second.upstream) == []  # not routed around by default
    if provider == "anthropic":
        # The stream the filter ended is an answer that ended so.
        assert out.error is None and out.text == ""
        assert isinstance(out.events[-1], RouterDone) and out.events[-1].finish_reason == "content_filter"
        return
    assert out.error is not None and (out.error.code, out.error.retryable) == ("content_filtered", False)
    (attempt,) = out.error.attempts
    assert (attempt.reason, attempt.provider_code) == ("content_filtered", REFUSAL_CODES[provider])
    assert attempt.provider_message


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_refusal_is_routed_around_when_the_request_asks(emu: Emulator, router: Router, provider: str) -> None:
    first, second = CATALOG.resolve(FIRST[provider]), CATALOG.resolve(FIRST[others(provider)[0]])
    emu.script(Script(error_kind="refusal"), model=first.upstream)
    emu.script(Script(text=ANSWER), model=second.upstream)
    out = await run(router, [first, second], REQUEST, OperatorKeys(), on_refusal="fallback")
    assert out.error is None and out.text == "".join(ANSWER)
    (fb,) = out.of(FallbackStarted)
    assert (fb.from_model, fb.to_model, fb.reason) == (first.id, second.id, "content_filtered")
    refused = segments(out)[0]
    assert (refused.status, refused.reason, refused.provider_code) == (
        "failed",
        "content_filtered",
        REFUSAL_CODES[provider],
    )


@pytest.mark.parametrize("on_refusal", ["error", "fallback"])
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_stream_the_filter_ended_is_done_with_content_filter(
    emu: Emulator, router: Router, provider: str, on_refusal: str
) -> None:
    first, second = CATALOG.resolve(FIRST[provider]), CATALOG.resolve(FIRST[others(provider)[0]])
    emu.script(Script(text=ANSWER[:2], finish="content_filter"), model=first.upstream)
    out = await run(router, [first, second], REQUEST, OperatorKeys(), on_refusal=on_refusal)
    assert out.error is None and out.text == "".join(ANSWER[:2])
    done = out.events[-1]
    assert isinstance(done, RouterDone) and done.finish_reason == "content_filter"
    assert requests_for(emu, second.upstream) == []  # an answer the filter ended is not continued elsewhere
