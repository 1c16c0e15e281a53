"""The in-process circuit breaker: closed -> open -> half-open -> closed, per provider and model."""

from __future__ import annotations

from providers.breaker import Breaker, MemoryBreaker, NoBreaker


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
