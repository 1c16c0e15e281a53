"""`python -m tests.emulators --port 9100`: run the emulator until interrupted (for bench/ and manual use)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from tests.emulators.server import Emulator


def main() -> None:
    parser = argparse.ArgumentParser(description="OpenAI / Anthropic / Gemini streaming emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(Emulator(args.host, args.port)))


async def _run(emu: Emulator) -> None:
    await emu.start()
    print(f"emulator on {emu.url} (OpenAI base URL: {emu.openai_base_url})", flush=True)
    await emu.serve_forever()


if __name__ == "__main__":
    main()
