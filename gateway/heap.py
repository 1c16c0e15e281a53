"""What lives as long as the process is moved out of the garbage collector's generations (`gc.freeze`) at start,
so the full collections that the per-token path's allocations trigger no longer walk the modules, the app and
its services."""

from __future__ import annotations

import gc


def settle() -> None:
    """At start, before serving: collect what the start left behind, then freeze the rest."""
    gc.collect()
    gc.freeze()
