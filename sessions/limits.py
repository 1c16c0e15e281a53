"""Per-user stream limits: how many streams may run at once, and how many may start a minute.

The manager talks to a `UserLimiter`; the in-memory one counts per process. A shared implementation (e.g. over
Redis) slots in behind the same Protocol when several instances must enforce one limit together.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from sessions.errors import fail


class UserLimiter(Protocol):
    async def admit(self, user_id: str) -> None:
        """Count one stream start for the user, or raise a `limited` GatewayError (`too_many_streams`,
        `rate_limited` with `retry_after_s`) and count nothing."""
        ...

    def release(self, user_id: str) -> None:
        """A stream admitted earlier has ended. Must not block: a networked implementation queues the update."""
        ...

    def running(self, user_id: str) -> int:
        """Streams the user has running, as far as this limiter knows."""
        ...


class MemoryUserLimiter:
    """Concurrent streams by counter, starts a minute by a sliding window of start times."""

    def __init__(
        self, max_concurrent: int, starts_per_minute: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_concurrent = max_concurrent
        self.starts_per_minute = starts_per_minute
        self._clock = clock
        self._running: dict[str, int] = {}
        self._starts: dict[str, deque[float]] = {}
        self._admits = 0

    async def admit(self, user_id: str) -> None:
        now = self._clock()
        starts = self._starts.get(user_id)
        if starts is not None:
            while starts and starts[0] <= now - 60:
                starts.popleft()
        # Concurrency first: a start refused for it must not use up the per-minute allowance.
        if self._running.get(user_id, 0) >= self.max_concurrent:
            raise fail("too_many_streams", f"at most {self.max_concurrent} concurrent streams")
        if starts is not None and len(starts) >= self.starts_per_minute:
            raise fail(
                "rate_limited", f"at most {self.starts_per_minute} streams a minute", retry_after_s=starts[0] + 60 - now
            )
        self._starts.setdefault(user_id, deque()).append(now)
        self._running[user_id] = self._running.get(user_id, 0) + 1
        self._prune(now)

    def release(self, user_id: str) -> None:
        n = self._running.get(user_id, 0) - 1
        if n > 0:
            self._running[user_id] = n
        else:
            self._running.pop(user_id, None)

    def running(self, user_id: str) -> int:
        return self._running.get(user_id, 0)

    def _prune(self, now: float) -> None:
        # Keep memory proportional to recently active users, not to every user ever seen.
        self._admits += 1
        if self._admits % 1024 == 0:
            for uid in [u for u, q in self._starts.items() if not q or q[-1] <= now - 60]:
                del self._starts[uid]
