"""What lives as long as the process is moved out of the garbage collector's generations (`gc.freeze`) at start,
so the full collections that the per-token path's allocations trigger no longer walk the modules, the app and
its services."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def settle() -> None:
    """At start, before serving: collect what the start left behind, then freeze the rest."""
    gc.collect()
    gc.freeze()


def frozen_after(build: Callable[[], T]) -> Callable[[], T]:
    """`build`, then what it imported and made moved out of the collector's generations too: an SDK imported at
    a provider's first stream (after the start's `settle`) would otherwise be walked by every full collection
    that the per-token path's allocations trigger."""

    def run() -> T:
        built = build()
        gc.freeze()
        return built

    return run
