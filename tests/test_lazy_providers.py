"""Provider SDKs are imported when a stream first needs them, not at start."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_sdks_load_on_first_use(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from gateway.app import create_app
        from gateway.settings import Settings
        from providers.base import ChatRequest, Credential, Message

        app = create_app(Settings(_env_file=None, gateway_data_dir={str(tmp_path)!r}))
        providers = app.state.services.providers
        sdks = ("openai", "anthropic", "google.genai", "supabase", "asyncpg")
        print("start", [m for m in sdks if m in sys.modules])

        async def use(name):
            stream = providers[name].stream(ChatRequest((Message("user", "hi"),)), "m", Credential("k"))
            await stream.aclose()

        asyncio.run(use("anthropic"))
        print("after", [m for m in sdks if m in sys.modules])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    lines = dict(line.split(" ", 1) for line in out.stdout.strip().splitlines())
    assert lines["start"] == "[]"
    assert lines["after"] == "['anthropic']"
