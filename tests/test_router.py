"""The fallback router against scripted providers (our Provider protocol) and the mock provider."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from providers import errors
from providers.backoff import Backoff
from providers.base import ChatRequest, Message
from providers.breaker import MemoryBreaker
from providers.catalog import Catalog
from providers.continuation import continue_instruction
from providers.events import TextDelta, ToolCallDelta, Usage
from providers.mock import MockProvider, mock_word
from providers.router import (
    AttemptStarted,
    FallbackStarted,
    Router,
    RouterDone,
    Segment,
    SegmentEnded,
)
from tests.support.scripted import Keys, ScriptedProvider, Step, run, spec

REQ = ChatRequest((Message("system", "Be brief."), Message("user", "Tell me about foxes.")))


class FakeTime:
    """A clock that only moves when the router sleeps: backoff waits are observed, not endured."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_router(*providers: ScriptedProvider, t: FakeTime | None = None, **kw: Any) -> Router:
    kw.setdefault("backoff", Backoff(rng=random.Random(7)))
    if t is not None:
        kw.setdefault("clock", t.clock)
        kw.setdefault("sleep", t.sleep)
    return Router({p.name: p for p in providers}, **kw)


def segments(out: Any) -> list[Segment]:
    return [e.segment for e in out.of(SegmentEnded)]


# -- happy path and before-first-token retries ----------------------------------------------------------


async def test_single_model_answers() -> None:
    p = ScriptedProvider("p1", {"a": [Step(text=("Hel", "lo"), usage=Usage(12, 2))]})
    out = await run(make_router(p), [spec("a")], REQ)
    assert out.error is None and out.text == "Hello"
    (seg,) = segments(out)
    assert (seg.status, seg.usage, seg.estimated, seg.chars) == ("ok", Usage(12, 2), False, 5)
    assert out.events[-1] == RouterDone("stop", [seg])
    assert not out.of(FallbackStarted)
    assert p.requests("a") == [REQ]


async def test_backoff_honours_retry_after() -> None:
    t = FakeTime()
    p = ScriptedProvider("p1")
    p.script("a", Step(text=(), fail=errors.RateLimited(retry_after=1.5)), Step(text=("ok",)))
    out = await run(make_router(p, t=t), [spec("a"), spec("b")], REQ)
    assert out.text == "ok"
    assert len(t.sleeps) == 1 and 1.5 <= t.sleeps[0] <= 1.5 + 0.25
    segs = segments(out)
    assert [(s.model, s.status, s.reason, s.retry) for s in segs] == [
        ("a", "failed", "rate_limited", 0),
        ("a", "ok", None, 1),
    ]
    # A retry of the same model is a visible segment but no fallback, and costs nothing without output.
    assert not out.of(FallbackStarted)
    assert segs[0].usage == Usage() and segs[0].cost_usd == 0 and not segs[0].estimated
    assert p.requests("b") == []


async def test_backoff_is_exponential_and_jittered_then_moves_down_the_chain() -> None:
    t = FakeTime()
    p = ScriptedProvider("p1")
    p.script("a", *[Step(text=(), fail=errors.ServerError()) for _ in range(3)])
    p.script("b", Step(text=("from b",)))
    out = await run(
        make_router(p, t=t, backoff=Backoff(max_retries=2, base_s=0.2, rng=random.Random(1))),
        [spec("a"), spec("b")],
        REQ,
    )
    assert out.text == "from b"
    assert len(t.sleeps) == 2
    assert 0.1 <= t.sleeps[0] <= 0.2 and 0.2 <= t.sleeps[1] <= 0.4
    assert len(p.requests("a")) == 3
    (fb,) = out.of(FallbackStarted)
    assert (fb.from_model, fb.to_model, fb.reason, fb.chars_so_far, fb.mode) == (
        "a",
        "b",
        "server_error",
        0,
        "continue",
    )


def test_backoff_delays() -> None:
    b = Backoff(max_retries=3, base_s=1.0, cap_s=3.0, max_retry_after_s=10, rng=random.Random(3))
    for _ in range(50):
        assert 0.5 <= (b.delay(0) or 0) <= 1.0
        assert 1.0 <= (b.delay(1) or 0) <= 2.0
        assert 1.5 <= (b.delay(2) or 0) <= 3.0  # capped
    assert b.delay(3) is None
    assert b.delay(0, retry_after=11) is None  # waiting longer than the next model would take
    assert 7.0 <= (b.delay(0, retry_after=7) or 0) <= 7.25
    assert 0.5 <= (b.delay(0, retry_after=0.1) or 0) <= 1.0  # a short retry-after does not shorten the floor


async def test_long_retry_after_moves_on_without_waiting() -> None:
    t = FakeTime()
    p = ScriptedProvider("p1")
    p.script("a", Step(text=(), fail=errors.RateLimited(retry_after=60)))
    out = await run(make_router(p, t=t), [spec("a"), spec("b")], REQ)
    assert out.text == "Hello world" and t.sleeps == []
    assert len(p.requests("a")) == 1


async def test_retries_stay_within_the_request_deadline() -> None:
    t = FakeTime()
    p = ScriptedProvider("p1")
    p.script("a", *[Step(text=(), fail=errors.RateLimited(retry_after=3)) for _ in range(3)])
    router = make_router(p, t=t, request_deadline_s=5.0)
    out = await run(router, [spec("a"), spec("b")], REQ)
    # One 3 s wait fits in 5 s, a second does not: then the chain moves on instead of waiting.
    assert len(t.sleeps) == 1 and len(p.requests("a")) == 2
    assert out.text == "Hello world"


async def test_past_the_deadline_no_new_model_is_started_before_output() -> None:
    t = FakeTime()
    p = ScriptedProvider("p1")

    async def slow_sleep(s: float) -> None:
        t.now += 100

    p.script("a", Step(text=(), fail=errors.ServerError()), Step(text=(), fail=errors.ServerError()))
    router = make_router(p, t=t, request_deadline_s=50.0, sleep=slow_sleep, backoff=Backoff(max_retries=1))
    out = await run(router, [spec("a"), spec("b"), spec("c")], REQ)
    assert out.error is not None and out.error.code == "all_models_failed"
    assert [(a.model, a.reason) for a in out.error.attempts] == [
        ("a", "server_error"),
        ("a", "server_error"),
        ("b", "deadline_exceeded"),
        ("c", "deadline_exceeded"),
    ]
    assert p.requests("b") == []


async def test_auth_failure_skips_the_provider_without_retry() -> None:
    t = FakeTime()
    x = ScriptedProvider("x", {"x1": [Step(text=(), fail=errors.AuthFailed())]})
    y = ScriptedProvider("y", {"y1": [Step(text=("from y",))]})
    chain = [spec("x1", "x"), spec("x2", "x"), spec("y1", "y")]
    out = await run(make_router(x, y, t=t), chain, REQ)
    assert out.text == "from y"
    assert t.sleeps == []
    assert [s.model for s in x.seen] == ["x1"]  # no retry, and x2 (same provider) never asked
    assert [(s.model, s.reason) for s in segments(out)] == [("x1", "auth_failed"), ("y1", None)]
    (fb,) = out.of(FallbackStarted)
    assert (fb.from_model, fb.to_model, fb.reason) == ("x1", "y1", "auth_failed")


async def test_bad_request_is_reported_not_tried_everywhere() -> None:
    p = ScriptedProvider("p1", {"a": [Step(text=(), fail=errors.BadRequest("max_tokens too large"))]})
    out = await run(make_router(p), [spec("a"), spec("b")], REQ)
    assert out.error is not None
    assert (out.error.code, out.error.retryable) == ("bad_request", False)
    assert [s.model for s in p.seen] == ["a"]


async def test_all_fail_names_each_attempt() -> None:
    t = FakeTime()
    x = ScriptedProvider("x")
    x.script("x1", Step(text=(), fail=errors.Overloaded()), Step(text=(), fail=errors.Overloaded()))
    x.script("x2", Step(text=(), fail=errors.ContentRefused()))
    y = ScriptedProvider("y")
    chain = [spec("x1", "x"), spec("x2", "x"), spec("nope", "missing"), spec("y1", "y")]
    router = make_router(x, y, t=t, backoff=Backoff(max_retries=1))
    # A refusal is routed around only when the request asks for it.
    out = await run(router, chain, REQ, keys=Keys(only={"x", "missing"}), on_refusal="fallback")
    assert out.error is not None and out.error.code == "all_models_failed" and out.error.retryable
    assert [(a.model, a.reason, a.segment) for a in out.error.attempts] == [
        ("x1", "overloaded", 1),
        ("x1", "overloaded", 2),
        ("x2", "content_filtered", 3),
        ("nope", "unavailable", None),
        ("y1", "no_key", None),
    ]
    assert str(out.error).startswith("x1: overloaded, x1: overloaded, x2: content_filtered")


async def test_truncated_stream_is_a_failure() -> None:
    p = ScriptedProvider("p1")
    p.script("a", Step(text=("The answer", " is"), finish=None, usage=None))
    p.script("b", Step(text=(" 42.",)))
    out = await run(make_router(p), [spec("a"), spec("b")], REQ)
    assert out.text == "The answer is 42."
    assert [(s.model, s.reason) for s in segments(out)] == [("a", "truncated"), ("b", None)]


# -- after the first token: continuation -----------------------------------------------------------------


async def test_midstream_failure_continues_with_prefill() -> None:
    p = ScriptedProvider("p1")
    p.script("a", Step(text=("The quick", " brown"), fail=errors.ConnectionLost(), usage=None))
    p.script("b", Step(text=(" fox", " jumps."), usage=Usage(30, 2)))
    out = await run(make_router(p), [spec("a"), spec("b", prefill=True)], REQ)
    assert out.text == "The quick brown fox jumps."
    (fb,) = out.of(FallbackStarted)
    assert (fb.from_model, fb.to_model, fb.reason, fb.chars_so_far, fb.mode) == (
        "a",
        "b",
        "connection_lost",
        15,
        "continue",
    )
    # `fallback` precedes the new model's first token.
    i_fb = out.events.index(fb)
    assert not any(isinstance(e, TextDelta) for e in out.events[out.events.index(out.of(SegmentEnded)[0]) : i_fb])
    (cont,) = p.requests("b")
    assert cont.messages == (*REQ.messages, Message("assistant", "The quick brown"))
    a, b = segments(out)
    assert (a.status, a.reason, a.estimated, a.chars) == ("failed", "connection_lost", True, 15)
    assert a.usage.output_tokens == 4 and a.usage.input_tokens > 0 and a.cost_usd >= 0
    assert (b.status, b.form, b.estimated, b.usage) == ("ok", "prefill", False, Usage(30, 2))


async def test_midstream_failure_continues_with_instruction_where_prefill_is_not_accepted() -> None:
    p = ScriptedProvider("p1")
    p.script("a", Step(text=("The quick", " brown"), fail=errors.ServerError()))
    p.script("b", Step(text=(" fox.",)))
    out = await run(make_router(p), [spec("a", prefill=True), spec("b", prefill=False)], REQ)
    assert out.text == "The quick brown fox."
    (cont,) = p.requests("b")
    assert cont.messages == (
        *REQ.messages,
        Message("assistant", "The quick brown"),
        Message("user", continue_instruction("The quick brown")),
    )
    assert segments(out)[1].form == "instruction"


async def test_prefill_rejected_retries_the_same_model_in_instruction_form() -> None:
    p = ScriptedProvider("p1")
    p.script("a", Step(text=("Foxes are", " small"), fail=errors.Overloaded()))
    p.script("b", Step(text=(), fail=errors.PrefillRejected()), Step(text=(" canids.",)))
    router = make_router(p)
    out = await run(router, [spec("a"), spec("b", prefill=True), spec("c")], REQ)
    assert out.text == "Foxes are small canids."
    first, second = p.requests("b")
    assert first.messages[-1] == Message("assistant", "Foxes are small")
    assert second.messages[-2:] == (
        Message("assistant", "Foxes are small"),
        Message("user", continue_instruction("Foxes are small")),
    )
    assert [(s.model, s.reason, s.form) for s in segments(out)] == [
        ("a", "overloaded", "original"),
        ("b", "prefill_rejected", "prefill"),
        ("b", None, "instruction"),
    ]
    assert len(out.of(FallbackStarted)) == 1  # the instruction retry is the same model: no second fallback
    assert p.requests("c") == []
    # Learned for the process: the next continuation on b goes straight to the instruction form.
    assert "b" in router.no_prefill
    p.script("a", Step(text=("Again",), fail=errors.Overloaded()))
    await run(router, [spec("a"), spec("b", prefill=True)], REQ)
    assert p.requests("b")[-1].messages[-1] == Message("user", continue_instruction("Again"))


async def test_a_plain_400_on_a_prefill_also_gets_the_instruction_form() -> None:
    p = ScriptedProvider("p1")
    p.script("a", Step(text=("Partial",), fail=errors.ServerError()))
    p.script("b", Step(text=(), fail=errors.BadRequest("assistant prefill not supported")), Step(text=(" rest",)))
    out = await run(make_router(p), [spec("a"), spec("b", prefill=True)], REQ)
    assert out.error is None and out.text == "Partial rest"


async def test_continuation_bad_request_moves_on_rather_than_blaming_the_caller() -> None:
    p = ScriptedProvider("p1")
    p.script("a", Step(text=("Partial",), fail=errors.ServerError()))
    p.script("b", Step(text=(), fail=errors.BadRequest("context too long for this model")))
    p.script("c", Step(text=(" rest",)))
    out = await run(make_router(p), [spec("a"), spec("b"), spec("c")], REQ)
    assert out.error is None and out.text == "Partial rest"


async def test_repeated_tail_is_trimmed_at_the_seam() -> None:
    p = ScriptedProvider("p1")
    p.script("a", Step(text=("The quick", " brown"), fail=errors.ServerError()))
    p.script("b", Step(text=(" quick", " brown", " fox", " jumps", " over.")))
    out = await run(make_router(p), [spec("a"), spec("b")], REQ)
    assert out.text == "The quick brown fox jumps over."
    # Once the seam is decided, later tokens pass through untouched.
    deltas = [e.text for e in out.events if isinstance(e, TextDelta)]
    assert deltas[-2:] == [" jumps", " over."]


async def test_whitespace_at_the_seam_is_not_doubled() -> None:
    p = ScriptedProvider("p1")
    p.script("a", Step(text=("The quick", " brown "), fail=errors.ServerError()))
    p.script("b", Step(text=(" fox.",)))
    out = await run(make_router(p), [spec("a"), spec("b", prefill=True)], REQ)
    assert p.requests("b")[0].messages[-1] == Message("assistant", "The quick brown")  # no trailing space
    assert out.text == "The quick brown fox."


async def test_a_continuation_that_does_not_repeat_is_untouched() -> None:
    p = ScriptedProvider("p1")
    p.script("a", Step(text=("I said hi",), fail=errors.ServerError()))
    p.script("b", Step(text=(" and", " left.")))
    out = await run(make_router(p), [spec("a"), spec("b")], REQ)
    assert out.text == "I said hi and left."
    assert [e.text for e in out.events if isinstance(e, TextDelta)][1:] == [" and", " left."]


async def test_half_streamed_tool_call_is_restarted() -> None:
    p = ScriptedProvider("p1")
    p.script("a", Step(text=(), tool=('{"ci', 'ty": "Pa'), fail=errors.ConnectionLost()))
    p.script("b", Step(text=(), tool=('{"city":', ' "Paris"}'), finish="tool_calls"))
    out = await run(make_router(p), [spec("a"), spec("b", prefill=True)], REQ)
    (fb,) = out.of(FallbackStarted)
    assert fb.mode == "restart"
    (req_b,) = p.requests("b")
    assert req_b == REQ  # the original request: never continued as prose
    after = out.events[out.events.index(fb) :]
    args = "".join(e.arguments for e in after if isinstance(e, ToolCallDelta))
    assert args == '{"city": "Paris"}'
    assert out.events[-1].finish_reason == "tool_calls"


async def test_text_then_half_tool_call_restarts_everything() -> None:
    p = ScriptedProvider("p1")
    p.script("a", Step(text=("Let me check.",), tool=('{"ci',), fail=errors.ServerError()))
    p.script("b", Step(text=("It is sunny.",)))
    out = await run(make_router(p), [spec("a"), spec("b", prefill=True)], REQ)
    (fb,) = out.of(FallbackStarted)
    assert (fb.mode, fb.chars_so_far) == ("restart", 13)
    assert p.requests("b") == [REQ]
    assert out.text == "It is sunny."


async def test_restart_policy_discards_partial_text() -> None:
    p = ScriptedProvider("p1")
    p.script("a", Step(text=("Half an", " answer"), fail=errors.ServerError()))
    p.script("b", Step(text=("A whole answer.",)))
    out = await run(make_router(p), [spec("a"), spec("b", prefill=True)], REQ, policy="restart")
    (fb,) = out.of(FallbackStarted)
    assert (fb.mode, fb.chars_so_far) == ("restart", 14)
    assert p.requests("b") == [REQ]
    assert out.text == "A whole answer."


async def test_error_policy_ends_the_stream() -> None:
    p = ScriptedProvider("p1")
    p.script("a", Step(text=("Half",), fail=errors.ServerError()))
    out = await run(make_router(p), [spec("a"), spec("b")], REQ, policy="error")
    assert out.error is not None and (out.error.code, out.error.retryable) == ("midstream_failed", True)
    assert p.requests("b") == []
    # Before any output the policy does not apply: the chain still helps.
    p.script("a", Step(text=(), fail=errors.ContentRefused()))
    out = await run(make_router(p), [spec("a"), spec("b")], REQ, policy="error", on_refusal="fallback")
    assert out.error is None and out.text == "Hello world"


async def test_failover_timestamps_are_recorded() -> None:
    seen: list[Segment] = []
    p = ScriptedProvider("p1")
    p.script("a", Step(text=("x",), fail=errors.ServerError()))
    out = await run(make_router(p, on_failover=seen.append), [spec("a"), spec("b")], REQ)
    a, b = segments(out)
    assert a.failed_at is not None and a.failover_ms is None
    assert b.failover_from == a.failed_at and b.sent_at is not None and b.sent_at >= b.failover_from
    assert b.failover_ms is not None and b.failover_ms >= 0
    assert seen == [b]


# -- stalls --------------------------------------------------------------------------------------------------


async def test_first_token_stall_falls_back() -> None:
    p = ScriptedProvider("p1")
    p.script("a", Step(text=(), stall=True))
    router = make_router(p, first_token_timeout_s=0.05, backoff=Backoff(max_retries=0))
    async with asyncio.timeout(5):  # a missed stall would hang, not fail
        out = await run(router, [spec("a"), spec("b")], REQ)
    assert out.text == "Hello world"
    assert segments(out)[0].reason == "stalled"
    assert p.seen[0].closed  # the upstream iterator was closed


async def test_inter_token_stall_continues_on_the_next_model() -> None:
    p = ScriptedProvider("p1")
    p.script("a", Step(text=("Foxes", " are"), stall=True))
    p.script("b", Step(text=(" clever.",)))
    router = make_router(p, first_token_timeout_s=5, inter_token_timeout_s=0.05)
    async with asyncio.timeout(5):  # a missed stall would hang, not fail
        out = await run(router, [spec("a"), spec("b")], REQ)
    assert out.text == "Foxes are clever."
    assert [(s.reason, s.chars) for s in segments(out)] == [("stalled", 9), (None, 8)]
    assert p.seen[0].closed
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_per_model_timeouts_override_the_defaults() -> None:
    p = ScriptedProvider("p1")
    p.script("a", Step(text=("one",), stall=True))
    router = make_router(p, first_token_timeout_s=30, inter_token_timeout_s=30)
    async with asyncio.timeout(5):  # a missed stall would hang, not fail
        out = await run(router, [spec("a", inter_token_timeout=0.05), spec("b")], REQ)
    assert segments(out)[0].reason == "stalled"


async def test_slow_tokens_within_the_timeout_are_not_a_stall() -> None:
    p = ScriptedProvider("p1", {"a": [Step(text=("a", "b", "c", "d"), delay=0.03)]})
    router = make_router(p, first_token_timeout_s=0.1, inter_token_timeout_s=0.1)
    out = await run(router, [spec("a")], REQ)
    assert out.text == "abcd" and out.error is None


async def test_a_slow_consumer_is_not_a_stalled_model() -> None:
    p = ScriptedProvider("p1", {"a": [Step(text=("a", "b", "c"))]})
    router = make_router(p, first_token_timeout_s=0.05, inter_token_timeout_s=0.05)
    got = []
    async for ev in router.stream(REQ, [spec("a")], Keys()):
        got.append(ev)
        await asyncio.sleep(0.12)  # the consumer dawdles; the upstream answered at once
    assert "".join(e.text for e in got if isinstance(e, TextDelta)) == "abc"
    assert isinstance(got[-1], RouterDone)


async def test_cancelling_the_stream_closes_upstream_and_bills_the_partial() -> None:
    p = ScriptedProvider("p1", {"a": [Step(text=("x",) * 1000, delay=0.005)]})
    router = make_router(p, first_token_timeout_s=0.05, inter_token_timeout_s=0.05)
    got: list[Any] = []

    async def consume() -> None:
        async for ev in router.stream(REQ, [spec("a")], Keys()):
            got.append(ev)

    task = asyncio.create_task(consume())
    while sum(isinstance(e, TextDelta) for e in got) < 5:
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    ended = [e.segment for e in got if isinstance(e, SegmentEnded)]
    assert len(ended) == 1 and ended[0].status == "cancelled" and ended[0].estimated
    assert ended[0].usage.output_tokens >= 1
    assert p.seen[0].closed


# -- circuit breaker through the router ----------------------------------------------------------------------


async def test_breaker_opens_skips_and_recovers() -> None:
    t = FakeTime()
    breaker = MemoryBreaker(min_requests=2, window_s=60, cooldown_s=30, clock=t.clock)
    p = ScriptedProvider("p1")
    router = make_router(p, t=t, breaker=breaker, backoff=Backoff(max_retries=0))
    chain = [spec("a"), spec("b")]
    p.script("a", Step(text=(), fail=errors.ServerError()), Step(text=(), fail=errors.ServerError()))
    for _ in range(2):  # two streams fail on a: the circuit opens
        assert (await run(router, chain, REQ)).text == "Hello world"
    assert breaker.state("p1", "a") == "open"
    before = len(p.requests("a"))
    out = await run(router, chain, REQ)  # skipped: no request to a at all
    assert len(p.requests("a")) == before
    assert out.text == "Hello world"
    assert out.of(AttemptStarted)[0].model.id == "b"
    t.now += 31  # cool-down over: one probe gets through, succeeds, and closes the circuit
    assert breaker.state("p1", "a") == "half_open"
    p.script("a", Step(text=("a is back",)))
    out = await run(router, chain, REQ)
    assert out.text == "a is back"
    assert breaker.state("p1", "a") == "closed"


async def test_breaker_skip_is_named_when_everything_fails() -> None:
    t = FakeTime()
    breaker = MemoryBreaker(min_requests=1, window_s=60, cooldown_s=30, clock=t.clock)
    p = ScriptedProvider("p1")
    p.script("a", Step(text=(), fail=errors.ServerError()))
    router = make_router(p, t=t, breaker=breaker, backoff=Backoff(max_retries=0))
    await run(router, [spec("a")], REQ)
    out = await run(router, [spec("a")], REQ)
    assert out.error is not None
    assert [(a.model, a.reason, a.segment) for a in out.error.attempts] == [("a", "circuit_open", None)]


async def test_rate_limits_and_refused_keys_never_open_the_circuit_for_everyone() -> None:
    t = FakeTime()
    breaker = MemoryBreaker(min_requests=1, window_s=60, cooldown_s=30, clock=t.clock)
    p, q = ScriptedProvider("p1"), ScriptedProvider("p2")
    router = make_router(p, q, t=t, breaker=breaker, backoff=Backoff(max_retries=0))
    # One credential's failures, whoever's key it is (a user's own or the operator's).
    for source in ("user", "operator"):
        for failure in (errors.RateLimited(), errors.AuthFailed()):
            p.script("a", Step(text=(), fail=failure))
            out = await run(router, [spec("a"), spec("b", "p2")], REQ, keys=Keys(source=source))
            assert out.text == "Hello world"
            assert breaker.state("p1", "a") == "closed"
    p.script("a", Step(text=(), fail=errors.Overloaded()))  # a provider-wide fault does count
    await run(router, [spec("a"), spec("b", "p2")], REQ)
    assert breaker.state("p1", "a") == "open"


# -- the mock provider ---------------------------------------------------------------------------------------


async def test_mock_fallback_reads_as_one_answer() -> None:
    cat = Catalog.build()
    router = Router({"mock": MockProvider()}, breaker=MemoryBreaker())
    req = ChatRequest((Message("user", "hello [[mock tokens=12 fail_after=5 only=mock]]"),))
    out = await run(router, [cat.resolve("mock"), cat.resolve("mock-backup")], req)
    assert out.error is None
    seed_words = [e.text for e in out.events if isinstance(e, TextDelta)]
    assert len(seed_words) == 12
    words = out.text.split(" ")
    assert len(words) == 12
    # The same deterministic sequence an unbroken stream would have produced.
    plain = await run(router, [cat.resolve("mock-backup")], ChatRequest((Message("user", "hello [[mock tokens=12]]"),)))
    assert plain.text == out.text
    (fb,) = out.of(FallbackStarted)
    assert (fb.from_model, fb.to_model, fb.mode) == ("mock", "mock-backup", "continue")


@pytest.mark.parametrize("fail_after", [45, 60, 150])
async def test_mock_fallback_after_a_long_partial_still_reads_as_one_answer(fail_after: int) -> None:
    """The mock's words never repeat a run right after itself, so the seam never takes its continuation for a
    repeat of the partial answer (a periodic word list did, once the partial was longer than its period)."""
    cat = Catalog.build()
    router = Router({"mock": MockProvider()})
    req = ChatRequest((Message("user", f"hello [[mock tokens=200 fail_after={fail_after} only=mock]]"),))
    out = await run(router, [cat.resolve("mock"), cat.resolve("mock-backup")], req)
    plain = await run(
        router, [cat.resolve("mock-backup")], ChatRequest((Message("user", "hello [[mock tokens=200]]"),))
    )
    assert out.text == plain.text and len(out.text.split(" ")) == 200


def test_mock_words_never_repeat_a_run_right_after_itself() -> None:
    for seed in range(5):
        words = [mock_word(seed, i) for i in range(600)]
        for k in range(1, 150):
            assert not any(words[i : i + k] == words[i + k : i + 2 * k] for i in range(len(words) - 2 * k)), (seed, k)


async def test_closing_the_stream_between_events_releases_a_half_open_probe() -> None:
    t = FakeTime()
    breaker = MemoryBreaker(min_requests=1, window_s=60, cooldown_s=30, clock=t.clock)
    p = ScriptedProvider("p1")
    p.script("a", Step(text=(), fail=errors.ServerError()))
    router = make_router(p, t=t, breaker=breaker, backoff=Backoff(max_retries=0))
    await run(router, [spec("a"), spec("b")], REQ)
    t.now += 31
    gen = router.stream(REQ, [spec("a")], Keys())
    first = await gen.__anext__()  # the probe is acquired and announced...
    assert isinstance(first, AttemptStarted)
    await gen.aclose()  # ...and the consumer goes away before using it
    assert await breaker.acquire("p1", "a")  # the next stream may probe


async def test_cancelling_while_the_seam_holds_text_closes_the_upstream_and_bills_it() -> None:
    p = ScriptedProvider("p1")
    p.script("a", Step(text=("Foxes hunt at dusk.", " They live in dens"), fail=errors.ServerError()))
    # " They" may be the last sentence again: held, while the upstream pauses before its next token.
    p.script("b", Step(text=(" They", " dig", " burrows."), delay=0.4))
    router = make_router(p, first_token_timeout_s=5, inter_token_timeout_s=5)
    got: list[Any] = []

    async def consume() -> None:
        async for ev in router.stream(REQ, [spec("a"), spec("b")], Keys()):
            got.append(ev)

    task = asyncio.create_task(consume())
    async with asyncio.timeout(5):
        while len(p.seen) < 2:
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.5)  # " They" arrived at 0.4 s and is held; the next token is due at 0.8 s
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert p.seen[1].closed  # the upstream read that was waiting was cancelled and the stream closed
    ended = [e.segment for e in got if isinstance(e, SegmentEnded)]
    assert [(s.model, s.status) for s in ended] == [("a", "failed"), ("b", "cancelled")]
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
