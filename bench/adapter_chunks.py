"""CPU per upstream chunk of each provider adapter, against the emulator in its own process.

    python -m bench.adapter_chunks                 # every adapter, 2000-chunk streams, 5 rounds
    python -m bench.adapter_chunks --only gemini --chunks 5000

Only this process's CPU is counted (the emulator runs in a child process), so the figure is what the
adapter and its SDK spend reading, parsing and normalizing one chunk. The median of the rounds is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator

import httpx

from providers.anthropic import AnthropicProvider
from providers.base import ChatRequest, Credential, Message, Provider
from providers.gemini import GeminiProvider
from providers.openai import OpenAIProvider

REQUEST = ChatRequest((Message("user", "Tell me about foxes."),), max_tokens=4096)
MODELS = {"openai": "gpt-4.1-mini", "anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.5-flash"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def _emulator() -> AsyncIterator[str]:
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.emulators", "--port", str(port), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        await asyncio.wait_for(proc.stdout.readline(), 30)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        await proc.wait()


def _provider(name: str, url: str) -> Provider:
    if name == "openai":
        return OpenAIProvider("openai", url + "/v1")
    if name == "anthropic":
        return AnthropicProvider(url)
    return GeminiProvider(url)


async def _round(provider: Provider, model: str, chunks: int) -> float:
    """CPU seconds per chunk for one stream of `chunks` text chunks."""
    start = time.process_time()
    seen = 0
    async for _ in provider.stream(REQUEST, model, Credential("bench-key")):
        seen += 1
    spent = time.process_time() - start
    if seen < chunks:
        raise RuntimeError(f"expected {chunks} events, got {seen}")
    return spent / chunks


async def main(only: list[str], chunks: int, rounds: int) -> None:
    async with _emulator() as url:
        async with httpx.AsyncClient() as admin:
            words = [f" w{i}" for i in range(chunks)]
            await admin.post(url + "/_emulator/default", json={"script": {"text": words}})
        for name in only:
            provider = _provider(name, url)
            try:
                await _round(provider, MODELS[name], chunks)  # warm: imports, pools, first connection
                per = [await _round(provider, MODELS[name], chunks) for _ in range(rounds)]
            finally:
                await provider.aclose()
            print(f"{name:10s} {statistics.median(per) * 1e6:7.1f} µs CPU per chunk (median of {rounds})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="openai,anthropic,gemini")
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.only.split(","), args.chunks, args.rounds))
