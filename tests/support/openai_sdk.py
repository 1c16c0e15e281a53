"""What the tests of the OpenAI-SDK faces share: a gateway on the module's emulator, an SDK client for it, and
the gateway's extra field as the SDK keeps it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from openai import AsyncOpenAI

from tests.conftest import Live
from tests.emulators import Emulator
from tests.test_providers_gateway import emulated


def gw(obj: Any) -> dict[str, Any]:
    """The top-level `gateway` object of a reply or chunk."""
    assert obj.model_extra is not None
    out: dict[str, Any] = obj.model_extra["gateway"]
    return out


async def emulated_gateway(emu: Emulator, live_factory: Callable[..., Any], **settings: Any) -> Live:
    """A live gateway whose providers are `emu` (reset first), with operator keys for all three."""
    emu.reset()
    made: Live = await live_factory(**emulated(emu, **settings))
    return made


@asynccontextmanager
async def sdk(live: Live) -> AsyncIterator[AsyncOpenAI]:
    # No retries: a test must see the first answer, not a retried one.
    async with AsyncOpenAI(base_url=f"{live.url}/v1", api_key=live.token, max_retries=0, timeout=20) as c:
        yield c
