"""What lives as long as the process is moved out of the garbage collector's generations (`gc.freeze`) at start,
so the full collections that the per-token path's allocations trigger no longer walk the modules, the app and
its services; and full collections are made rarer.

Every live stream keeps its events (two objects per token) until it ends, so under load the oldest generation
holds a few hundred thousand objects that are all alive, and each full collection walks them all: at 200 live
streams, 4-5 full collections in 20 s of 30-100 ms each, a pause of every stream (bench/README.md). A cycle of
garbage is almost always found by the young collections; the full one only has to run now and then."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


# Collections of the middle generation between two full ones (CPython's default is 10).
FULL_EVERY = 100


def settle() -> None:
    """At start, before serving: collect what the start left behind, freeze the rest, space full collections."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_EVERY)


def frozen_after(build: Callable[[], T]) -> Callable[[], T]:
    """`build`, then what it imported and made moved out of the collector's generations too: an SDK imported at
    a provider's first stream (after the start's `settle`) would otherwise be walked by every full collection
    that the per-token path's allocations trigger. The freeze also takes whatever else is alive at that moment
    (the objects of streams then running): once per provider, and they are still freed when their last
    reference goes; only a cycle among them would outlive its use."""

    def run() -> T:
        built = build()
        gc.freeze()
        return built

    return run
