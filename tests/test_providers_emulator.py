"""The emulator speaks each API byte for byte like the recorded examples, and its faults behave on the wire."""

from __future__ import annotations

import asyncio
import json
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


HI = [{"role": "user", "content": "hi"}]


def valid_body(path: str, model: str = "m") -> dict[str, object]:
    """The smallest request each API answers (the emulator refuses what the real API would)."""
    if path.startswith("/v1/chat/completions"):
        return {"model": model, "messages": HI, "stream": True, "stream_options": {"include_usage": True}}
    if path.startswith("/v1/messages"):
        return {"model": model, "max_tokens": 64, "messages": HI, "stream": True}
    return {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


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
    status, data = await _post(emu, path, valid_body(path, model))
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
        resp = await client.post(emu.url + path, json=valid_body(path))
    assert resp.status_code == status
    assert needle in resp.content
    assert resp.headers["retry-after"] == "3"


async def test_drop_leaves_chunked_body_unterminated(emu: Emulator) -> None:
    emu.script(Script(text=("a", "b", "c"), drop_after=2))
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(emu.url + "/v1/messages", json=valid_body("/v1/messages"))
    assert emu.last.tokens_sent == 2 and not emu.last.completed


async def test_model_queue_comes_before_shared_queue_and_default(emu: Emulator) -> None:
    emu.default(Script(text=("default",)))
    emu.script(Script(text=("shared",)))
    emu.script(Script(text=("for-b",)), model="b")
    bodies = []
    for model in ("a", "b", "a"):
        _, data = await _post(emu, "/v1/chat/completions", valid_body("/v1/chat/completions", model))
        bodies.append(data)
    assert b'"shared"' in bodies[0] and b'"for-b"' in bodies[1] and b'"default"' in bodies[2]


async def test_stall_sees_client_leave(emu: Emulator) -> None:
    emu.script(Script(text=("a", "b"), stall_after=1))
    async with (
        httpx.AsyncClient() as client,
        client.stream("POST", emu.url + "/v1/chat/completions", json=valid_body("/v1/chat/completions")) as resp,
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
    _, data = await _post(emu, "/v1/messages", valid_body("/v1/messages"))
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


OPENAI, ANTHROPIC, GEMINI = (
    "/v1/chat/completions",
    "/v1/messages",
    "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
)
REFUSED = [
    (OPENAI, {"temprature": 0.5}, "Unrecognized request argument supplied: temprature", "temprature"),
    (OPENAI, {"temperature": "hot"}, "expected a decimal", "temperature"),
    (OPENAI, {"top_p": 1.5}, "Expected a value <= 1", "top_p"),
    (OPENAI, {"tool_choice": "required"}, "only allowed when 'tools' are specified", "tool_choice"),
    (OPENAI, {"response_format": {"type": "json_object"}}, "must contain the word 'json'", "messages"),
    (
        OPENAI,
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "strict": True, "schema": {"type": "object"}},
            }
        },
        "'additionalProperties' is required to be supplied and to be false",
        "response_format",
    ),
    (OPENAI, {"metadata": {"a": "b"}}, "only allowed when 'store' is enabled", "metadata"),
    (OPENAI, {"model": "gpt-5-mini", "temperature": 0.3}, "Only the default (1) value is supported", "temperature"),
    (OPENAI, {"model": "gpt-5", "stop": ["x"]}, "'stop' is not supported with this model", "stop"),
    (
        OPENAI,
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {}}]}]},
        "unknown parameter",
        "messages[0].content[0].cache_control",
    ),
    (ANTHROPIC, {"seed": 1}, "seed: Extra inputs are not permitted", None),
    (ANTHROPIC, {"temperature": 1.5}, "Expected a value <= 1", None),
    (ANTHROPIC, {"temperature": 0.5, "top_p": 0.5}, "cannot both be specified", None),
    (ANTHROPIC, {"thinking": {"type": "enabled", "budget_tokens": 2048}}, "must be greater than", None),
    (
        ANTHROPIC,
        {"max_tokens": 4000, "thinking": {"type": "enabled", "budget_tokens": 2048}, "temperature": 0.5},
        "may only be set to 1 when thinking is enabled",
        None,
    ),
    (ANTHROPIC, {"tool_choice": {"type": "any"}}, "a tool must be provided", None),
    (
        ANTHROPIC,
        {"output_config": {"format": {"type": "json_schema", "schema": {"type": "object", "properties": {}}}}},
        "'additionalProperties' must be set to false",
        None,
    ),
    (
        ANTHROPIC,
        {"model": "claude-opus-4-1", "output_config": {"format": {"type": "json_schema", "schema": {}}}},
        "structured outputs are not supported",
        None,
    ),
    (GEMINI, {"stream": True}, 'Unknown name "stream": Cannot find field.', "stream"),
    (GEMINI, {"generationConfig": {"topp": 0.5}}, "Unknown name \"topp\" at 'generation_config'", "generation_config"),
    (GEMINI, {"generationConfig": {"presencePenalty": 0.5}}, "Penalty is not enabled", "generation_config"),
    (GEMINI, {"generationConfig": {"responseJsonSchema": {"type": "object"}}}, "needs response_mime_type", None),
    (GEMINI, {"generationConfig": {"thinkingConfig": {"thinkingBudget": 30000}}}, "between 0 and 24576", None),
]


@pytest.mark.parametrize(("path", "change", "words", "param"), REFUSED)
async def test_requests_the_real_api_refuses_get_its_own_400(
    emu: Emulator, path: str, change: dict[str, object], words: str, param: str | None
) -> None:
    emu.script(Script(status=429))  # validation comes first, as upstream
    body = {**valid_body(path, "gpt-4.1-mini" if path == OPENAI else "claude-sonnet-4-5"), **change}
    async with httpx.AsyncClient() as client:
        resp = await client.post(emu.url + path, json=body)
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert words in error["message"]
    if path == OPENAI:
        assert error["type"] == "invalid_request_error" and error["param"] == param
    elif path == ANTHROPIC:
        assert resp.json()["type"] == "error" and error["type"] == "invalid_request_error"
    else:
        assert error["status"] == "INVALID_ARGUMENT" and error["code"] == 400
        if param is not None:
            assert error["details"][0]["fieldViolations"][0]["field"] == param
    assert emu.last.rejected == error["message"] and emu.last.completed


async def test_structured_requests_are_answered_in_kind(emu: Emulator) -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}}},
        "required": ["n", "tags"],
        "additionalProperties": False,
    }
    body = {
        **valid_body(OPENAI, "gpt-4.1-mini"),
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}},
    }
    _, data = await _post(emu, OPENAI, body)
    contents = [json.loads(line[6:])["choices"] for line in data.decode().split("\n\n") if line.startswith("data: {")]
    streamed = "".join(c[0]["delta"].get("content") or "" for c in contents if c)
    assert json.loads(streamed) == {"n": 7, "tags": ["text"]}
    tools = [{"name": "pick", "input_schema": schema}]
    body = {
        **valid_body(ANTHROPIC, "claude-sonnet-4-5"),
        "tools": tools,
        "tool_choice": {"type": "tool", "name": "pick"},
    }
    _, data = await _post(emu, ANTHROPIC, body)
    assert b'"type":"tool_use","id":"toolu_emu1","name":"pick"' in data and b'"stop_reason":"tool_use"' in data
