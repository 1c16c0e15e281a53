"""The circuit breaker: closed -> open -> half-open -> closed, per provider and model, on a failure rate of
provider-wide faults; then through the router and the live gateway with the real SDKs against the emulator: one
user's failing key skips nothing for anyone, a provider-wide storm opens it for everyone, visibly, and a probe
closes it again."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import openai

from providers.backoff import Backoff
from providers.breaker import Breaker, MemoryBreaker, NoBreaker
from providers.router import FallbackStarted, ModelSkipped, Router
from tests.conftest import Live
from tests.emulators import Emulator, Script
from tests.support.clients import collect_sse, user_msg
from tests.support.fallback import CATALOG, REQUEST, OperatorKeys
from tests.support.scripted import run


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_both_breakers_satisfy_the_protocol() -> None:
    breakers: list[Breaker] = [MemoryBreaker(), NoBreaker()]
    assert len(breakers) == 2


async def test_opens_after_n_failures_within_the_window() -> None:
    clock = Clock()
    b = MemoryBreaker(min_requests=3, window_s=10, cooldown_s=30, clock=clock)
    for _ in range(2):
        assert await b.acquire("openai", "gpt-5-mini")
        await b.failure("openai", "gpt-5-mini")
    assert b.state("openai", "gpt-5-mini") == "closed"
    assert await b.acquire("openai", "gpt-5-mini")
    await b.failure("openai", "gpt-5-mini")
    assert b.state("openai", "gpt-5-mini") == "open"
    assert not await b.acquire("openai", "gpt-5-mini")
    # Per provider and model: the others are untouched.
    assert await b.acquire("openai", "gpt-5")
    assert await b.acquire("anthropic", "gpt-5-mini")
    assert b.states() == {("openai", "gpt-5-mini"): "open"}


async def test_failures_outside_the_window_do_not_add_up() -> None:
    clock = Clock()
    b = MemoryBreaker(min_requests=2, window_s=10, cooldown_s=30, clock=clock)
    await b.failure("p", "m")
    clock.now += 11
    await b.failure("p", "m")
    assert b.state("p", "m") == "closed"
    clock.now += 1
    await b.failure("p", "m")
    assert b.state("p", "m") == "open"


async def test_half_open_lets_one_probe_through_and_its_success_closes() -> None:
    clock = Clock()
    b = MemoryBreaker(min_requests=1, window_s=10, cooldown_s=30, clock=clock)
    await b.failure("p", "m")
    clock.now += 29.9
    assert not await b.acquire("p", "m")
    clock.now += 0.2
    assert b.state("p", "m") == "half_open"
    assert await b.acquire("p", "m")  # the probe
    assert not await b.acquire("p", "m")  # everyone else waits for its verdict
    await b.success("p", "m")
    assert b.state("p", "m") == "closed"
    assert await b.acquire("p", "m") and await b.acquire("p", "m")


async def test_a_failed_probe_opens_for_another_cooldown() -> None:
    clock = Clock()
    b = MemoryBreaker(min_requests=1, window_s=10, cooldown_s=30, clock=clock)
    await b.failure("p", "m")
    clock.now += 31
    assert await b.acquire("p", "m")
    await b.failure("p", "m")
    assert b.state("p", "m") == "open"
    clock.now += 29
    assert not await b.acquire("p", "m")
    clock.now += 2
    assert await b.acquire("p", "m")


async def test_a_released_probe_lets_the_next_one_through() -> None:
    clock = Clock()
    b = MemoryBreaker(min_requests=1, window_s=10, cooldown_s=30, clock=clock)
    await b.failure("p", "m")
    clock.now += 31
    assert await b.acquire("p", "m")
    await b.release("p", "m")  # cancelled by its client: no verdict
    assert b.state("p", "m") == "half_open"
    assert await b.acquire("p", "m")


async def test_successes_while_closed_keep_the_window_count() -> None:
    clock = Clock()
    b = MemoryBreaker(min_requests=2, window_s=10, cooldown_s=30, clock=clock)
    await b.failure("p", "m")
    await b.success("p", "m")
    await b.failure("p", "m")
    assert b.state("p", "m") == "open"  # a flapping model still trips the breaker


async def test_a_probe_that_never_reports_does_not_block_the_model_forever() -> None:
    clock = Clock()
    b = MemoryBreaker(min_requests=1, window_s=10, cooldown_s=30, clock=clock)
    await b.failure("p", "m")
    clock.now += 31
    assert await b.acquire("p", "m")  # this probe is lost (its stream vanished without a verdict)
    clock.now += 10
    assert not await b.acquire("p", "m")
    clock.now += 25
    assert await b.acquire("p", "m")


async def test_a_few_failures_among_many_successes_never_open() -> None:
    clock = Clock()
    b = MemoryBreaker(min_requests=10, failure_rate=0.5, window_s=30, cooldown_s=30, clock=clock)
    for i in range(200):
        assert await b.acquire("p", "m")
        if i % 33 == 16:  # six failures spread over the window
            await b.failure("p", "m")
        else:
            await b.success("p", "m")
        clock.now += 0.1
    assert b.state("p", "m") == "closed"


async def test_it_opens_on_the_failure_rate_only_over_the_minimum_volume() -> None:
    clock = Clock()
    b = MemoryBreaker(min_requests=10, failure_rate=0.5, window_s=30, cooldown_s=30, clock=clock)
    for _ in range(9):
        await b.failure("p", "m")
    assert b.state("p", "m") == "closed"  # every attempt failed, but only nine: too few to judge
    for _ in range(9):
        await b.success("p", "m")
    await b.failure("p", "m")  # 10 of 19 failed
    assert b.state("p", "m") == "open"


async def test_a_quarter_of_requests_failing_keeps_it_closed() -> None:
    clock = Clock()
    b = MemoryBreaker(min_requests=10, failure_rate=0.5, window_s=30, cooldown_s=30, clock=clock)
    for i in range(400):
        await (b.failure if i % 4 == 0 else b.success)("p", "m")
        clock.now += 0.05
    assert b.state("p", "m") == "closed"


async def test_old_outcomes_leave_the_window() -> None:
    clock = Clock()
    b = MemoryBreaker(min_requests=4, failure_rate=0.5, window_s=10, cooldown_s=30, clock=clock)
    for _ in range(20):
        await b.success("p", "m")
    clock.now += 11  # the successes are out of the window: four failures now are a 100% rate
    for _ in range(3):
        await b.failure("p", "m")
    assert b.state("p", "m") == "closed"
    await b.failure("p", "m")
    assert b.state("p", "m") == "open"


async def test_released_attempts_count_for_nothing() -> None:
    clock = Clock()
    b = MemoryBreaker(min_requests=2, failure_rate=0.5, window_s=10, cooldown_s=30, clock=clock)
    await b.failure("p", "m")
    for _ in range(50):  # one credential's 429s and 401s: released, neither success nor failure
        assert await b.acquire("p", "m")
        await b.release("p", "m")
    await b.failure("p", "m")
    assert b.state("p", "m") == "open"  # two of two counted outcomes failed


# -- through the router, the real SDKs and the emulator ---------------------------------------------------------------


async def test_six_midstream_failures_among_200_healthy_streams_skip_nothing(
    emu: Emulator, adapters: dict[str, Any]
) -> None:
    emu.reset()
    breaker = MemoryBreaker()  # the defaults: at least half of at least 10 attempts in 30 s
    router = Router(adapters, breaker=breaker, backoff=Backoff(max_retries=0))
    chain = [CATALOG.resolve("gpt-5-mini"), CATALOG.resolve("claude-sonnet-4-5")]
    skips = fallbacks = 0
    for i in range(200):
        if i % 33 == 16:
            emu.script(Script(text=("Foxes", " are", " small"), drop_after=2), model="gpt-5-mini")
        out = await run(router, chain, REQUEST, OperatorKeys())
        assert out.error is None
        skips += len(out.of(ModelSkipped))
        fallbacks += len(out.of(FallbackStarted))
    assert (skips, fallbacks) == (0, 6)
    assert breaker.states() == {}


# -- through the live gateway ----------------------------------------------------------------------------------------

KEY_A = "sk-proj-user-a-" + "a" * 32
KEY_B = "sk-proj-user-b-" + "b" * 32


async def sse(live: Live, token: str, model: str, fallbacks: list[str]) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=live.url, timeout=20) as http:
        events = await collect_sse(
            http,
            "POST",
            "/v1/chat/stream",
            headers=live.headers(token),
            json={"model": model, "fallbacks": fallbacks, "messages": user_msg("Tell me about foxes.")},
        )
    return [e.data for e in events]


async def test_one_users_failing_key_skips_nothing_for_another(live_factory: Callable[..., Any]) -> None:
    async with Emulator() as emu:
        live: Live = await live_factory(
            openai_base_url=emu.openai_base_url, gateway_max_concurrent_streams=64, gateway_starts_per_minute=1000
        )
        user_a, user_b = str(uuid.uuid4()), str(uuid.uuid4())
        token_a, token_b = (live.services.auth.mint_dev_token(user_id=u) for u in (user_a, user_b))
        async with httpx.AsyncClient(base_url=live.url) as http:
            for token, key in ((token_a, KEY_A), (token_b, KEY_B)):
                r = await http.put("/v1/keys/openai", json={"api_key": key}, headers=live.headers(token))
                assert r.status_code == 200, r.text
        emu.default(Script(text=("Foxes", " are", " small", " omnivores.")))

        async def user_b_streams(n: int) -> list[list[dict[str, Any]]]:
            return [await sse(live, token_b, "gpt-5-mini", []) for _ in range(n)]

        for status in (429, 401):  # A's own key: rate limited, then refused, 25 streams each
            emu.default(Script(status=status), key=KEY_A)
            failed, answered = await asyncio.gather(
                asyncio.gather(*(sse(live, token_a, "gpt-5-mini", []) for _ in range(25))), user_b_streams(5)
            )
            assert {s[-1]["type"] for s in failed} == {"error"}
            assert {a["reason"] for s in failed for a in s[-1]["attempts"]} == {
                "rate_limited" if status == 429 else "auth_failed"
            }
            for events in answered:
                done = events[-1]
                assert done["type"] == "done" and done["skipped"] == []
                assert not [e for e in events if e["type"] == "fallback"]
                assert [g["model"] for g in done["segments"]] == ["gpt-5-mini"]
        assert sum(r.key_suffix == KEY_A[-4:] for r in emu.requests) >= 50
        assert live.services.sessions.router.breaker.states() == {}


async def test_a_provider_wide_storm_opens_the_circuit_for_everyone_visibly_and_a_probe_closes_it(
    live_factory: Callable[..., Any],
) -> None:
    async with Emulator() as emu:
        live: Live = await live_factory(
            openai_base_url=emu.openai_base_url,
            anthropic_base_url=emu.anthropic_base_url,
            openai_api_key="sk-operator-openai",
            anthropic_api_key="sk-operator-anthropic",
            gateway_allow_operator_keys=True,
            # Long enough that the checks below all run while the circuit is open, even on a loaded machine.
            gateway_breaker_cooldown_s=2.0,
        )
        tokens = [live.services.auth.mint_dev_token(user_id=str(uuid.uuid4())) for _ in range(2)]
        emu.default(Script(text=(" They", " hunt", " at", " dusk.")))
        emu.default(Script(status=503), model="gpt-5-mini")
        chain = ("gpt-5-mini", ["claude-sonnet-4-5"])
        for n in range(3):  # nine attempts (each stream retries twice), every one a 503: too few to judge
            events = await sse(live, tokens[n % 2], *chain)
            assert events[-1]["type"] == "done" and events[-1]["skipped"] == []
        # The tenth failure opens the circuit: the stream's next retry is refused by it and says so.
        events = await sse(live, tokens[1], *chain)
        assert events[-1]["skipped"] == [{"model": "gpt-5-mini", "provider": "openai", "reason": "circuit_open"}]
        asked = len([r for r in emu.requests if r.model == "gpt-5-mini"])
        assert asked == 10

        for token in tokens:  # open for everyone: the model is skipped, and the skip is told
            events = await sse(live, token, *chain)
            started, fb = events[0], next(e for e in events if e["type"] == "fallback")
            assert (started["type"], started["model"]) == ("stream.started", "gpt-5-mini")
            assert (fb["from_model"], fb["to_model"], fb["reason"], fb["chars_so_far"]) == (
                "gpt-5-mini",
                "claude-sonnet-4-5",
                "circuit_open",
                0,
            )
            done = events[-1]
            assert done["skipped"] == [{"model": "gpt-5-mini", "provider": "openai", "reason": "circuit_open"}]
            assert [g["model"] for g in done["segments"]] == ["claude-sonnet-4-5"]
        client = openai.AsyncOpenAI(base_url=f"{live.url}/v1", api_key=tokens[0], max_retries=0)
        reply = await client.chat.completions.create(
            model="gpt-5-mini", messages=[{"role": "user", "content": "Hi"}], extra_body={"fallbacks": chain[1]}
        )
        gateway = reply.model_extra["gateway"] if reply.model_extra else {}
        assert [(f["from_model"], f["reason"]) for f in gateway["fallbacks"]] == [("gpt-5-mini", "circuit_open")]
        assert len([r for r in emu.requests if r.model == "gpt-5-mini"]) == asked  # nothing was sent to it

        emu.default(Script(text=("Foxes", " are", " back.")), model="gpt-5-mini")  # the storm is over
        breaker = live.services.sessions.router.breaker
        assert breaker.state("openai", "gpt-5-mini") == "open"
        async with asyncio.timeout(5):
            while breaker.state("openai", "gpt-5-mini") != "half_open":  # the cool-down is over
                await asyncio.sleep(0.05)
        probe = await sse(live, tokens[1], *chain)
        assert [g["model"] for g in probe[-1]["segments"]] == ["gpt-5-mini"] and probe[-1]["skipped"] == []
        again = await sse(live, tokens[0], *chain)
        assert not [e for e in again if e["type"] == "fallback"]
        await client.close()
