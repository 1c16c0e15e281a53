"""The emulator speaks each API byte for byte like the recorded examples, and its faults behave on the wire."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.emulators import Emulator, Script, ToolCallScript

EXAMPLES = Path(__file__).resolve().parent / "fixtures"  # recorded from each provider's API


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator() as e:
        yield e


async def _post(emu: Emulator, path: str, body: dict[str, object]) -> tuple[int, bytes]:
    async with httpx.AsyncClient() as client:
        resp = await client.post(emu.url + path, json=body, headers={"authorization": "Bearer sk-test-1234"})
        return resp.status_code, resp.content


CASES = [
    ("openai_chat.sse", "/v1/chat/completions", "gpt-4o-mini", Script()),
    (
        "openai_chat_tool.sse",
        "/v1/chat/completions",
        "gpt-4o-mini",
        Script(text=(), tool_call=ToolCallScript(), finish="tool_calls", output_tokens=3),
    ),
    ("anthropic_messages.sse", "/v1/messages", "claude-sonnet-4-5", Script()),
    (
        "anthropic_messages_tool.sse",
        "/v1/messages",
        "claude-sonnet-4-5",
        Script(text=(), tool_call=ToolCallScript(), finish="tool_calls", output_tokens=12),
    ),
    (
        "gemini_stream.sse",
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        "gemini-2.5-flash",
        Script(),
    ),
    (
        "gemini_stream_tool.sse",
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        "gemini-2.5-flash",
        Script(text=(), tool_call=ToolCallScript(), finish="tool_calls", output_tokens=3),
    ),
]


@pytest.mark.parametrize(("example", "path", "model", "script"), CASES, ids=[c[0] for c in CASES])
async def test_streams_match_recorded_examples_byte_for_byte(
    emu: Emulator, example: str, path: str, model: str, script: Script
) -> None:
    emu.script(script)
    body: dict[str, object] = {"model": model, "stream": True, "stream_options": {"include_usage": True}}
    status, data = await _post(emu, path, body)
    assert status == 200
    assert data == (EXAMPLES / example).read_bytes()
    rec = emu.last
    assert rec.model == model and rec.completed and not rec.disconnected
    assert rec.key_suffix == "1234" and "authorization" not in rec.headers


@pytest.mark.parametrize(
    ("path", "status", "needle"),
    [
        ("/v1/chat/completions", 429, b'"rate_limit_exceeded"'),
        ("/v1/messages", 529, b'"overloaded_error"'),
        ("/v1beta/models/gemini-2.5-flash:streamGenerateContent", 503, b'"UNAVAILABLE"'),
    ],
)
async def test_http_errors_carry_provider_bodies(emu: Emulator, path: str, status: int, needle: bytes) -> None:
    emu.script(Script(status=status, retry_after=3))
    async with httpx.AsyncClient() as client:
        resp = await client.post(emu.url + path, json={"model": "m", "stream": True})
    assert resp.status_code == status
    assert needle in resp.content
    assert resp.headers["retry-after"] == "3"


async def test_drop_leaves_chunked_body_unterminated(emu: Emulator) -> None:
    emu.script(Script(text=("a", "b", "c"), drop_after=2))
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(emu.url + "/v1/messages", json={"model": "m", "stream": True})
    assert emu.last.tokens_sent == 2 and not emu.last.completed


async def test_model_queue_comes_before_shared_queue_and_default(emu: Emulator) -> None:
    emu.default(Script(text=("default",)))
    emu.script(Script(text=("shared",)))
    emu.script(Script(text=("for-b",)), model="b")
    bodies = []
    for model in ("a", "b", "a"):
        _, data = await _post(emu, "/v1/chat/completions", {"model": model, "stream": True})
        bodies.append(data)
    assert b'"shared"' in bodies[0] and b'"for-b"' in bodies[1] and b'"default"' in bodies[2]


async def test_stall_sees_client_leave(emu: Emulator) -> None:
    emu.script(Script(text=("a", "b"), stall_after=1))
    async with (
        httpx.AsyncClient() as client,
        client.stream("POST", emu.url + "/v1/chat/completions", json={"model": "m"}) as resp,
    ):
        async for chunk in resp.aiter_raw():
            if b'"a"' in chunk:
                break
    assert await emu.wait_disconnect(timeout=1.0)
    assert emu.last.tokens_sent == 1


async def test_admin_endpoint_scripts_from_another_process(emu: Emulator) -> None:
    async with httpx.AsyncClient() as client:
        r = await client.post(emu.url + "/_emulator/script", json={"script": {"text": ["x", "y"]}, "model": "m"})
        assert r.status_code == 200
        bad = await client.post(emu.url + "/_emulator/script", json={"script": {"nope": 1}})
        assert bad.status_code == 400
    _, data = await _post(emu, "/v1/messages", {"model": "m", "stream": True})
    assert b'"text":"x"' in data and b'"text":"y"' in data
    async with httpx.AsyncClient() as client:
        rows = (await client.get(emu.url + "/_emulator/requests")).json()["requests"]
    assert rows[-1]["model"] == "m" and rows[-1]["completed"] is True


async def test_runs_as_a_module() -> None:
    proc = await asyncio.create_subprocess_exec(
        "python",
        "-m",
        "tests.emulators",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert b"emulator on" in line
    finally:
        proc.terminate()
        await proc.wait()
