"""Retry pacing for the same model before any token was produced: jittered exponential backoff that
honours the provider's retry-after, and knows when waiting is worse than moving down the chain."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    """`delay(n, retry_after)` is the wait before retry number `n` (0-based), or None: do not retry.

    Equal jitter (half fixed, half random) keeps a floor under the wait while spreading retries of many
    streams hit by the same outage. A retry-after from the provider is a floor too; one longer than
    `max_retry_after` means the model is better skipped than waited for.
    """

    max_retries: int = 2
    base_s: float = 0.25
    factor: float = 2.0
    cap_s: float = 4.0
    max_retry_after_s: float = 10.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, retry: int, retry_after: float | None = None) -> float | None:
        if retry >= self.max_retries:
            return None
        if retry_after is not None and retry_after > self.max_retry_after_s:
            return None
        step = min(self.cap_s, self.base_s * self.factor**retry)
        wait = step / 2 + self.rng.uniform(0, step / 2)
        if retry_after is not None and retry_after > wait:
            # Past the provider's horizon by a little jitter, so a crowd of streams does not return at once.
            wait = retry_after + self.rng.uniform(0, min(0.25, retry_after / 10))
        return wait
