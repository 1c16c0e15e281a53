"""The start's heap is frozen and full collections are spaced out (gateway.heap), in a served gateway."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A fresh interpreter runs the app's lifespan (what `python -m gateway` does before serving), then makes the
# per-token path's kind of garbage-free allocations: live objects kept, as a stream keeps its events.
SCRIPT = """
import asyncio, gc, json
from gateway.app import create_app
from gateway.settings import Settings

app = create_app(Settings(_env_file=None, gateway_data_dir={data!r}))
full = []
gc.callbacks.append(lambda phase, info: phase == "start" and info["generation"] == 2 and full.append(1))

async def main():
    async with app.router.lifespan_context(app):
        frozen = gc.get_freeze_count()
        full.clear()  # the start's own `gc.collect()` is one
        kept = [[i] for i in range(300_000)]  # 300k live containers, as 200 streams' events are
        print(json.dumps({{"frozen": frozen, "threshold": gc.get_threshold(), "full": len(full), "kept": len(kept)}}))

asyncio.run(main())
"""


def test_a_served_gateway_freezes_its_start_and_rarely_walks_what_streams_keep(tmp_path: Path) -> None:
    script = textwrap.dedent(SCRIPT.format(data=str(tmp_path)))
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["frozen"] > 10_000  # modules, the app, its services: out of every collection
    assert got["threshold"][2] == 100
    # 300k survivors take ~430 young and ~43 middle collections: CPython's default runs 3 full ones.
    assert got["full"] == 0
