"""The garbage collector's work in a process, by generation: `PYTHONPATH=bench/gcwatch GCWATCH_OUT=/tmp/gc`
before `python -m bench.run ...` (or any command) makes every Python process it starts write
`/tmp/gc.<pid>` once a second: {generation: [collections, CPU seconds, objects collected]}. Collections after
the gateway froze its start (gateway.heap) are counted apart, under "F0", "F1", "F2".

`GCWATCH_THRESHOLD=700,10,100` sets the thresholds at interpreter start, to try others (the gateway's own
`settle()` then sets the third again). CPU is the collecting thread's (`time.thread_time`), so a loaded machine
does not inflate it. Bench only: never on the gateway's own path.
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time

_OUT = os.environ.get("GCWATCH_OUT")

if _OUT:
    _stats: dict[str, list[float]] = {}
    _began = [0.0]
    _frozen = [False]

    def _watch(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            _began[0] = time.thread_time()
            return
        if not _frozen[0]:
            _frozen[0] = gc.get_freeze_count() > 0  # walks the frozen list: asked only until it is non-empty
        key = ("F" if _frozen[0] else "") + str(info["generation"])
        s = _stats.setdefault(key, [0, 0.0, 0])
        s[0] += 1
        s[1] += time.thread_time() - _began[0]
        s[2] += info["collected"]

    gc.callbacks.append(_watch)
    if os.environ.get("GCWATCH_THRESHOLD"):
        gc.set_threshold(*(int(x) for x in os.environ["GCWATCH_THRESHOLD"].split(",")))

    def _write() -> None:
        while True:
            time.sleep(1)
            with open(f"{_OUT}.{os.getpid()}", "w") as f:
                json.dump(_stats, f)

    threading.Thread(target=_write, name="gcwatch", daemon=True).start()
