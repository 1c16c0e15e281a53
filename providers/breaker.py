"""Circuit breakers: stop sending requests to a provider model that is failing for everyone, probe it again later.

One breaker instance is shared by every stream of the process (the router holds it). The router talks to it
through the small `Breaker` Protocol, whose methods are coroutines so a Redis-backed implementation (shared by
several gateway instances) can slot in without touching the router. The router reports only provider-wide faults
as failures (`failover.breaker_verdict`); a rate limit or a refused key is released, counting for nothing.

States per key (provider, upstream model):
- closed: requests flow; the outcomes of the last `window_s` are counted (in `BUCKETS` slices of it). When at least
  `min_requests` attempts ended in the window and at least `failure_rate` of them failed, the circuit opens: a
  failure rate over a minimum volume, so a few failures among many successes never open it.
- open: requests are refused until `cooldown_s` has passed since the circuit opened.
- half-open: one probe request at a time is let through; its success closes the circuit (with a clean count),
  its failure opens it again for another cool-down.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

BreakerState = Literal["closed", "open", "half_open"]

# The window is counted in this many slices: outcomes leave it a slice at a time, and memory stays bounded.
BUCKETS = 10


class Breaker(Protocol):
    """Every `acquire` that returned True is followed by exactly one of `success`, `failure`, `release`."""

    async def acquire(self, provider: str, model: str) -> bool: ...

    async def success(self, provider: str, model: str) -> None: ...

    async def failure(self, provider: str, model: str) -> None: ...

    async def release(self, provider: str, model: str) -> None:
        """The attempt ended without saying anything about the model's health (cancelled, one key's limit)."""
        ...


@dataclass(frozen=True, slots=True)
class Threshold:
    """When a circuit opens: at least `failure_rate` of at least `min_requests` outcomes within `window_s`."""

    min_requests: int = 10
    failure_rate: float = 0.5
    window_s: float = 30.0

    def __post_init__(self) -> None:
        if self.min_requests < 1:
            raise ValueError("min_requests must be at least 1")
        if not 0 < self.failure_rate <= 1:
            raise ValueError("failure_rate must be in (0, 1]")

    @property
    def bucket_s(self) -> float:
        return self.window_s / BUCKETS

    def trips(self, total: int, failed: int) -> bool:
        return total >= self.min_requests and failed >= math.ceil(self.failure_rate * total - 1e-9)


@dataclass(slots=True)
class _Circuit:
    state: BreakerState = "closed"
    # (bucket number, outcomes, failures), oldest first
    buckets: deque[list[int]] = field(default_factory=deque)
    opened_at: float = 0.0
    probing: bool = False
    probe_started: float = 0.0

    def count(self, bucket: int, oldest: int, failed: bool) -> tuple[int, int]:
        """Add one outcome; the window's (outcomes, failures)."""
        while self.buckets and self.buckets[0][0] < oldest:
            self.buckets.popleft()
        if not self.buckets or self.buckets[-1][0] != bucket:
            self.buckets.append([bucket, 0, 0])
        last = self.buckets[-1]
        last[1] += 1
        last[2] += failed
        return sum(b[1] for b in self.buckets), sum(b[2] for b in self.buckets)


class MemoryBreaker:
    """The in-process breaker: a dict of small circuits, no locks needed on one event loop."""

    def __init__(
        self,
        min_requests: int = 10,
        failure_rate: float = 0.5,
        window_s: float = 30.0,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = Threshold(min_requests, failure_rate, window_s)
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
        key = (provider, model)
        c = self._circuits.get(key)
        if c is None:
            c = self._circuits[key] = _Circuit()
        if c.state == "half_open":
            del self._circuits[key]  # the probe answered: closed, with a clean count
        elif c.state == "closed":
            self._count(c, failed=False)

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
        total, failed = self._count(c, failed=True)
        if self.threshold.trips(total, failed):
            c.state, c.opened_at = "open", now
            c.buckets.clear()

    def _count(self, c: _Circuit, *, failed: bool) -> tuple[int, int]:
        bucket = math.floor(self._clock() / self.threshold.bucket_s)
        return c.count(bucket, bucket - BUCKETS + 1, failed)

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
