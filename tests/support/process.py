"""A real `python -m gateway` process on a loopback port, as an operator runs it."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent.parent


async def start_gateway(data: Path, port: int, **env_vars: str) -> tuple[asyncio.subprocess.Process, str, Path]:
    """Start a development gateway with the given environment added; wait until it is ready. Returns the process,
    the development token it printed, and the path of its log."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "SUPABASE_", "OPENAI", "ANTHROPIC"))}
    env.pop("REDIS_URL", None)
    env.pop("DATABASE_URL", None)
    env.update(
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        GATEWAY_ENV="development",
        GATEWAY_DATA_DIR=str(data),
        GATEWAY_MOCK_DELAY_MS="0",
        GATEWAY_RESUME_WINDOW_S="60",
        LOG_LEVEL="INFO",
    )
    env.update(env_vars)
    log_path = data / "gateway.log"
    data.mkdir(parents=True, exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "--port",
        str(port),
        cwd=data,  # no stray .env from the checkout
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=log_path.open("wb"),
    )
    assert proc.stdout is not None
    token = ""
    async with asyncio.timeout(60):
        while not token:
            line = (await proc.stdout.readline()).decode()
            if not line:
                raise AssertionError(f"gateway exited early:\n{log_path.read_text()}")
            if line.startswith("eyJ"):
                token = line.strip()
    async with httpx.AsyncClient(timeout=2) as client, asyncio.timeout(60):
        while True:
            try:
                if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    return proc, token, log_path
