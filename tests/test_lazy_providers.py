"""Provider SDKs are imported when a stream first needs them, not at start, and never on the event loop."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A fresh interpreter (no SDK imported yet) builds the app, then streams through a provider for the first time,
# against a port nobody listens on: the build (the SDK's import) happens, then the request is refused.
SCRIPT = """
import asyncio, gc, json, sys, time
from gateway.app import create_app
from gateway.settings import Settings
from providers.base import ChatRequest, Credential, Message
from providers.errors import ProviderError

NAME = {name!r}
app = create_app(Settings(_env_file=None, gateway_data_dir={data!r}, {name}_base_url="http://127.0.0.1:9"))
providers = app.state.services.providers
sdks = ("openai", "anthropic", "google.genai", "supabase", "asyncpg")
out = {{"start": [m for m in sdks if m in sys.modules]}}

MODULE = {{"gemini": "google.genai"}}.get(NAME, NAME)

async def main():
    ticks = 0
    async def ticker():
        # Counts the ticks that ran while the SDK was being imported (begun, the adapter not built yet).
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            if MODULE in sys.modules and not providers[NAME].built:
                ticks += 1
    beat = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    stream = providers[NAME].stream(ChatRequest((Message("user", "hi"),)), "m", Credential("k"))
    out["created"] = [m for m in sdks if m in sys.modules]
    try:
        async for _ in stream:
            pass
    except ProviderError as exc:
        out["error"] = type(exc).__name__
    out["ticks_while_building"] = ticks
    out["after"] = [m for m in sdks if m in sys.modules]
    # The SDK's classes were frozen out of the collector's generations once built (gateway.heap.frozen_after).
    out["sdk_classes_tracked"] = sum(
        1 for o in gc.get_objects() if isinstance(o, type) and str(vars(o).get("__module__")).startswith(MODULE + ".")
    )
    beat.cancel()
    await providers[NAME].aclose()

asyncio.run(main())
print(json.dumps(out))
"""


def run(name: str, data: Path) -> dict[str, object]:
    script = textwrap.dedent(SCRIPT.format(name=name, data=str(data)))
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_sdks_load_on_first_use(tmp_path: Path) -> None:
    got = run("anthropic", tmp_path)
    assert got["start"] == [] and got["created"] == []
    assert got["after"] == ["anthropic"]
    assert got["error"] == "ConnectionLost"


def test_the_loop_is_not_blocked_while_an_sdk_loads(tmp_path: Path) -> None:
    """The first stream through a provider imports its SDK on a worker thread: meanwhile the event loop keeps
    running its other tasks (here a ticker; in the gateway, running streams and /healthz). Imported on the loop,
    the ticker could not run once between the import's start and the adapter being built."""
    got = run("openai", tmp_path)
    assert got["after"] == ["openai"] and got["error"] == "ConnectionLost"
    assert isinstance(got["ticks_while_building"], int) and got["ticks_while_building"] > 0


def test_an_sdk_loaded_late_is_kept_out_of_full_collections(tmp_path: Path) -> None:
    """What the SDK's import made (its classes, its models' schemas) is frozen once the adapter is built, as the
    start's heap is: a full collection, which the per-token path's allocations trigger every few seconds under
    load, would otherwise walk it each time (measured at 200 live streams: pauses of every stream of 30 to
    120 ms, bench/README.md "The collector")."""
    got = run("openai", tmp_path)
    assert got["after"] == ["openai"]
    assert got["sdk_classes_tracked"] == 0
