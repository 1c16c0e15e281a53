"""Stopping background tasks reliably when a library may swallow a cancellation.

On Python 3.11, `asyncio.wait_for` returns the awaited result instead of raising when a cancellation lands just as
that result arrives (fixed in 3.12). redis-py awaits through it, so a task cancelled during a Redis call may carry
on as if nothing happened: one `cancel()` followed by `await task` can then wait forever.
"""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any], *, retry_s: float = 0.05) -> None:
    """Cancel `task` until it has stopped. Re-raises what it failed with, other than the cancellation."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=retry_s)
    if not task.cancelled():
        task.result()


def reraise_swallowed_cancel() -> None:
    """In a loop around Redis calls: stop if this task was asked to, even when the call swallowed it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
