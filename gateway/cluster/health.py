"""Whether this instance can reach Redis right now, as one view shared by every cluster component.

One warning when Redis goes away and one when it is back, whichever component notices first. While it is
down, components skip Redis for a short while after each failure instead of each paying a connect timeout on
every call: they use their in-process fallback, then the next call after the pause probes Redis again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("gateway.cluster")


class RedisHealth:
    def __init__(
        self, *, instance_id: str = "", retry_s: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.instance_id = instance_id
        self.retry_s = retry_s
        self._clock = clock
        self._retry_at = 0.0
        self.healthy = True
        self.outages = 0

    def usable(self) -> bool:
        """Worth calling Redis now: it answered last time, or the pause after a failure is over."""
        return self.healthy or self._clock() >= self._retry_at

    def failed(self, what: str, exc: BaseException) -> None:
        self._retry_at = self._clock() + self.retry_s
        if self.healthy:
            self.healthy = False
            self.outages += 1
            log.warning(
                "redis unavailable: stream logs, limits, tickets and the circuit breaker are per instance until "
                "it is back",
                extra={"instance": self.instance_id, "component": what, "error": type(exc).__name__},
            )

    def ok(self) -> None:
        if not self.healthy:
            self.healthy = True
            log.info("redis is back: state is shared between instances again", extra={"instance": self.instance_id})
