"""Shared fixtures: settings on a temp data dir, a live gateway, and the real services."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import Settings
from tests.emulators import Emulator
from tests.support.clients import SSEEvent, collect_sse, iter_sse, user_msg
from tests.support.fallback import sdk_adapters
from tests.support.server import serve

REQUIRE_SERVICES = os.environ.get("GATEWAY_REQUIRE_SERVICES") == "1"

# Tests must not pick up a developer's .env or provider keys.
for _var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "REDIS_URL", "DATABASE_URL"):
    os.environ.pop(_var, None)


def make_settings(tmp: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "gateway_env": "development",
        "gateway_data_dir": tmp,
        "gateway_mock_delay_ms": 0.0,
        "gateway_dev_signing_key": "test-dev-signing-key-0123456789abcdef0123456789",
    }
    base.update(overrides)
    return Settings(_env_file=None, **base)  # type: ignore[call-arg]


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., Settings]:
    return lambda **kw: make_settings(tmp_path, **kw)


class Live:
    def __init__(self, url: str, app: Any) -> None:
        self.url = url
        self.ws_url = url.replace("http://", "ws://")
        self.app = app
        self.services = app.state.services
        self.token: str = self.services.dev_token

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"authorization": f"Bearer {token or self.token}"}

    async def chat(
        self, client: httpx.AsyncClient, prompt: str, token: str | None = None, model: str = "mock"
    ) -> list[SSEEvent]:
        """One whole stream over `POST /v1/chat/stream`, as the user of `token` (the dev user by default)."""
        return await collect_sse(
            client,
            "POST",
            f"{self.url}/v1/chat/stream",
            headers=self.headers(token),
            json={"model": model, "messages": user_msg(prompt)},
        )

    async def chat_then_drop(self, prompt: str, k: int) -> tuple[str, str, list[dict[str, Any]]]:
        """Start a stream over SSE, read `k` events, drop the connection: (stream id, last event id, the events)."""
        first: list[dict[str, Any]] = []
        last_id = ""
        async with (
            httpx.AsyncClient(base_url=self.url, timeout=10) as client,
            client.stream(
                "POST", "/v1/chat/stream", headers=self.headers(), json={"model": "mock", "messages": user_msg(prompt)}
            ) as r,
        ):
            sid = r.headers["x-stream-id"]
            async for ev in iter_sse(r):
                if isinstance(ev, SSEEvent):
                    first.append(ev.data)
                    last_id = ev.id or ""
                    if len(first) == k:
                        break
        return sid, last_id, first


@pytest.fixture
async def live_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Start real gateways on loopback ports; all are stopped at the end of the test."""
    from contextlib import AsyncExitStack

    async with AsyncExitStack() as stack:

        async def start(**overrides: Any) -> Live:
            n = len(list(tmp_path.glob("gw*")))
            data = tmp_path / f"gw{n}"
            app = create_app(make_settings(data, **overrides))
            url = await stack.enter_async_context(serve(app))
            return Live(url, app)

        yield start


@pytest.fixture
async def live(live_factory: Callable[..., Any]) -> Live:
    result: Live = await live_factory()
    return result


@pytest.fixture(scope="module")
async def emu() -> AsyncIterator[Emulator]:
    """One emulator for a module's tests (each resets it); a module may define its own."""
    async with Emulator() as e:
        yield e


@pytest.fixture(scope="module")
async def adapters(emu: Emulator) -> AsyncIterator[dict[str, Any]]:
    """The three SDK adapters pointed at the module's emulator."""
    async with sdk_adapters(emu) as made:
        yield made


def service_unavailable(what: str) -> None:
    """Skip locally when a service is missing; fail in CI, where it must be there."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required (GATEWAY_REQUIRE_SERVICES=1) but not reachable")
    pytest.skip(f"{what} not reachable")
