"""Circuit breakers: stop sending requests to a provider model that keeps failing, probe it again later.

One breaker instance is shared by every stream of the process (the router holds it). The router talks to
it through the small `Breaker` Protocol, whose methods are coroutines so a Redis-backed implementation
(shared by several gateway instances) can slot in without touching the router.

States per key (provider, upstream model):
- closed: requests flow; failures within `window_s` are counted, `failures` of them open the circuit.
- open: requests are refused until `cooldown_s` has passed since the circuit opened.
- half-open: one probe request at a time is let through; its success closes the circuit, its failure
  opens it again for another cool-down.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

BreakerState = Literal["closed", "open", "half_open"]


class Breaker(Protocol):
    """Every `acquire` that returned True is followed by exactly one of `success`, `failure`, `release`."""

    async def acquire(self, provider: str, model: str) -> bool: ...

    async def success(self, provider: str, model: str) -> None: ...

    async def failure(self, provider: str, model: str) -> None: ...

    async def release(self, provider: str, model: str) -> None:
        """The attempt ended without saying anything about the model's health (cancelled, caller's fault)."""
        ...


@dataclass(slots=True)
class _Circuit:
    state: BreakerState = "closed"
    failures: deque[float] = field(default_factory=deque)
    opened_at: float = 0.0
    probing: bool = False
    probe_started: float = 0.0


class MemoryBreaker:
    """The in-process breaker: a dict of small circuits, no locks needed on one event loop."""

    def __init__(
        self,
        failures: int = 5,
        window_s: float = 30.0,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures < 1:
            raise ValueError("failures must be at least 1")
        self.threshold = failures
        self.window_s = window_s
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._circuits: dict[tuple[str, str], _Circuit] = {}

    def state(self, provider: str, model: str) -> BreakerState:
        c = self._circuits.get((provider, model))
        if c is None:
            return "closed"
        if c.state == "open" and self._clock() - c.opened_at >= self.cooldown_s:
            return "half_open"
        return c.state

    def states(self) -> dict[tuple[str, str], BreakerState]:
        """Every circuit that is not plainly closed, for metrics and the health page."""
        out = {key: self.state(*key) for key in self._circuits}
        return {k: v for k, v in out.items() if v != "closed"}

    async def acquire(self, provider: str, model: str) -> bool:
        c = self._circuits.get((provider, model))
        if c is None or c.state == "closed":
            return True
        if c.state == "open":
            if self._clock() - c.opened_at < self.cooldown_s:
                return False
            c.state = "half_open"
        now = self._clock()
        if c.probing and now - c.probe_started < self.cooldown_s:
            return False
        # No probe out, or one that never reported back within a cool-down (lost): let a new one through.
        c.probing, c.probe_started = True, now
        return True

    async def success(self, provider: str, model: str) -> None:
        c = self._circuits.get((provider, model))
        if c is None:
            return
        if c.state != "closed" or not c.failures:
            # A successful probe (or a clean slate): forget the key entirely.
            del self._circuits[(provider, model)]

    async def failure(self, provider: str, model: str) -> None:
        key = (provider, model)
        c = self._circuits.get(key)
        if c is None:
            c = self._circuits[key] = _Circuit()
        now = self._clock()
        if c.state == "half_open":
            c.state, c.opened_at, c.probing = "open", now, False
            return
        if c.state == "open":  # a request admitted before the circuit opened failed too
            return
        c.failures.append(now)
        while c.failures and c.failures[0] <= now - self.window_s:
            c.failures.popleft()
        if len(c.failures) >= self.threshold:
            c.state, c.opened_at = "open", now
            c.failures.clear()

    async def release(self, provider: str, model: str) -> None:
        c = self._circuits.get((provider, model))
        if c is not None and c.state == "half_open":
            c.probing = False


class NoBreaker:
    """Never opens: for tests that exercise retries and fallbacks without circuit effects."""

    async def acquire(self, provider: str, model: str) -> bool:
        return True

    async def success(self, provider: str, model: str) -> None:
        return None

    async def failure(self, provider: str, model: str) -> None:
        return None

    async def release(self, provider: str, model: str) -> None:
        return None
