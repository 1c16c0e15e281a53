"""Stall detection for one attempt with one timer, not one timer per token.

The router marks when it starts waiting on the upstream (`since = time.monotonic()`) and when an event
arrives (`since = 0.0`): a float assignment each. A single loop timer looks at `since` when it fires;
if the wait is not yet due it re-arms itself for the due time (so it is never late and never early),
and if it is due it cancels the waiting task. The router turns that cancellation into `Stalled`.

The timer only ever cancels while the task is suspended in the upstream read (`since` is set only
around that await), so a slow consumer of the router's events is never mistaken for a stalled model.
"""

from __future__ import annotations

import asyncio
import time

# `since` is stamped with this clock (a C call, cheaper than `loop.time()`, which is a Python method and
# on uvloop a cached millisecond clock); timers are armed relative to it with `call_later`.
monotonic = time.monotonic


class Watchdog:
    __slots__ = ("_handle", "_loop", "_task", "fired", "since", "timeout")

    def __init__(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[object], timeout: float) -> None:
        self._loop = loop
        self._task = task
        self.timeout = timeout
        self.since = 0.0  # `monotonic()` when the current upstream wait began; 0.0 while not waiting
        self.fired = False
        self._handle: asyncio.TimerHandle | None = loop.call_later(timeout, self._fire)

    def retime(self, timeout: float) -> None:
        """Switch from the first-token to the inter-token timeout (once per attempt)."""
        self.timeout = timeout
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._loop.call_later(timeout, self._fire)

    def _fire(self) -> None:
        self._handle = None
        now = monotonic()
        since = self.since
        if since == 0.0:
            # Not waiting on the upstream now; the next wait starts later, so its due time is later too.
            self._handle = self._loop.call_later(self.timeout, self._fire)
            return
        due = since + self.timeout
        if due > now:
            self._handle = self._loop.call_later(due - now, self._fire)
            return
        self.fired = True
        self._task.cancel("stalled")

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def absorb(self) -> bool:
        """After a CancelledError: True if it was ours (and nobody else cancelled the task), so it is undone."""
        if not self.fired:
            return False
        self.fired = False
        return self._task.uncancel() == 0
