"""The error table, walked as clients see it: for every kind, the gateway's HTTP answer (status, body, headers),
the OpenAI SDK's exception (status, `type`, `code`) and the WebSocket (close code, or `error` frame); then real
errors of each face, provoked as a user would, land where the table says."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import openai
import pytest
import websockets
from fastapi import APIRouter, WebSocket
from openai import AsyncOpenAI

from gateway.auth import Principal
from gateway.errors import TABLE, speaking, status_of
from gateway.routes.ws import Connection
from gateway.socket_auth import close_refused
from sessions.errors import CODES, KINDS, GatewayError, Kind, fail
from tests.conftest import Live
from tests.emulators import Emulator, Script
from tests.support.clients import user_msg
from tests.test_providers_gateway import emulated, ws_stream

SDK_ERRORS: dict[int, type[openai.APIStatusError]] = {
    400: openai.BadRequestError,
    401: openai.AuthenticationError,
    403: openai.PermissionDeniedError,
    404: openai.NotFoundError,
    409: openai.ConflictError,
    422: openai.UnprocessableEntityError,
    429: openai.RateLimitError,
}


def probe_error(kind: str) -> GatewayError:
    assert kind in KINDS
    limited = kind == "limited"
    k: Kind = kind  # type: ignore[assignment]
    return GatewayError(
        k, f"probe_{kind}", f"a {kind} error", retryable=limited, retry_after_s=2.5 if limited else None
    )


def add_probes(live: Live) -> None:
    """Routes that fail with a given kind, answered by the gateway's own error handling on each face."""
    plain = APIRouter()
    speaks_openai = APIRouter(route_class=speaking("openai"))

    @plain.get("/probe/{kind}")
    async def http_probe(kind: str) -> None:
        raise probe_error(kind)

    @speaks_openai.post("/probe/{kind}/v1/chat/completions")
    async def openai_probe(kind: str) -> None:
        raise probe_error(kind)

    @plain.websocket("/probe/ws/{kind}")
    async def ws_probe(ws: WebSocket, kind: str) -> None:
        err = probe_error(kind)
        if TABLE[err.kind].close is not None:  # what the socket does with an error at the handshake
            await close_refused(ws, err)
            return
        await ws.accept()  # an error in a frame's handling: the frame is refused, the socket stays
        await Connection(ws, live.services, Principal("u", "authenticated")).refuse(err, "f1", "probe")
        await ws.receive()

    live.app.include_router(plain)
    live.app.include_router(speaks_openai)


@pytest.fixture
async def probed(live: Live) -> Live:
    add_probes(live)
    return live


async def test_every_kind_on_every_face(probed: Live) -> None:
    async with httpx.AsyncClient(base_url=probed.url, timeout=10) as client:
        for kind, row in TABLE.items():
            code = f"probe_{kind}"
            r = await client.get(f"/probe/{kind}")
            expected: dict[str, Any] = {"code": code, "message": f"a {kind} error"}
            if kind == "limited":
                expected |= {"retryable": True, "retry_after_s": 2.5}
                assert r.headers["retry-after"] == "3"
            assert (r.status_code, r.json()) == (row.status, {"error": expected}), kind
            assert (r.headers.get("www-authenticate") == "Bearer") == (kind == "unauthorized")

            async with AsyncOpenAI(base_url=f"{probed.url}/probe/{kind}/v1", api_key="k", max_retries=0) as sdk:
                with pytest.raises(openai.APIStatusError) as raised:
                    await sdk.chat.completions.create(model="mock", messages=user_msg("hi"))  # type: ignore[arg-type]
            exc = raised.value
            # The SDK faces answer a body that fails validation with 400, as OpenAI does (the gateway's own: 422).
            status = row.api_status or row.status
            assert isinstance(
                exc, SDK_ERRORS.get(status, openai.InternalServerError if status >= 500 else openai.APIStatusError)
            )
            assert isinstance(exc.body, dict) and exc.body["message"] == f"a {kind} error"
            assert (exc.status_code, exc.code, exc.type) == (status, code, row.openai)

            await check_socket(probed, kind, code)


async def check_socket(live: Live, kind: Kind, code: str) -> None:
    close = TABLE[kind].close
    async with websockets.connect(f"{live.ws_url}/probe/ws/{kind}") as ws:
        if close is not None:
            with pytest.raises(websockets.ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None and (info.value.rcvd.code, info.value.rcvd.reason) == (close, code)
            return
        frame = json.loads(await ws.recv())
    assert frame == {
        "type": "error",
        "stream_id": None,
        "id": "f1",
        "code": code,
        "message": f"a {kind} error",
        "retryable": kind == "limited",
        **({"retry_after_s": 2.5} if kind == "limited" else {}),
        "frame": "probe",
    }


# -- real errors, as users provoke them -------------------------------------------------------------------------


def expect(r: httpx.Response, code: str) -> dict[str, Any]:
    """A gateway-face HTTP error: the table's status for the code's kind, the gateway's body."""
    body: dict[str, Any] = r.json()["error"]
    assert (r.status_code, body["code"]) == (status_of(fail(code, "")), code), r.text
    assert set(body) <= {"code", "message", "retryable", "retry_after_s"} and body["message"]
    assert body.get("retryable", False) == fail(code, "").retryable
    return body


async def test_real_errors_of_the_gateway_face(live_factory: Callable[..., Any]) -> None:
    gw: Live = await live_factory(gateway_starts_per_minute=2, gateway_stream_log_max_events=16)
    anon = gw.services.auth.mint_dev_token(role="anon")
    other = "00000000-0000-4000-8000-0000000000c3"
    async with httpx.AsyncClient(base_url=gw.url, headers=gw.headers(), timeout=10) as client:
        events = await gw.chat(client, "long enough to be trimmed [[mock tokens=40]]")
        sid = events[0].data["stream_id"]
        post = "/v1/chat/stream"
        expect(await client.post(post, content="{", headers={"content-type": "application/json"}), "invalid_json")
        expect(await client.post(post, json={"model": "mock"}), "invalid_request")
        expect(await client.get(f"/v1/streams/{sid}/events", params={"after": "x"}), "invalid_cursor")
        expect(await client.get(f"/v1/streams/{sid}/events", params={"after": "1"}), "resume_too_old")
        r = await client.get("/v1/models", headers={"authorization": ""})
        assert expect(r, "missing_token") and r.headers["www-authenticate"] == "Bearer"
        expect(await client.get("/v1/models", headers={"authorization": f"Bearer {anon}"}), "anon_refused")
        expect(await client.get("/v1/usage", params={"user_id": other}), "forbidden")
        expect(await client.get("/v1/streams/st_nothing/events"), "stream_not_found")
        r = await client.patch("/v1/keys")
        assert expect(r, "method_not_allowed") and r.headers["allow"] == "GET"
        big = {"model": "mock", "messages": user_msg("x" * 300_000)}
        expect(await client.post(post, json=big), "request_too_large")
        expect(await client.post(post, json={"model": "gpt-5-mini", "messages": user_msg("hi")}), "no_key")
        expect(await client.post(post, json={"model": "nope", "messages": user_msg("hi")}), "unknown_model")
        await gw.chat(client, "the second start this minute [[mock tokens=2]]")
        r = await client.post(post, json={"model": "mock", "messages": user_msg("a third")})
        limited = expect(r, "rate_limited")
        assert 0 < limited["retry_after_s"] <= 60 and int(r.headers["retry-after"]) >= limited["retry_after_s"]
        # The OpenAI face says the same in its own body.
        async with AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=gw.token, max_retries=0) as sdk:
            with pytest.raises(openai.RateLimitError) as raised:
                await sdk.chat.completions.create(model="mock", messages=user_msg("hi"))  # type: ignore[arg-type]
        assert (raised.value.code, raised.value.type) == ("rate_limited", "rate_limit_error")
        assert raised.value.response.headers["retry-after"] == r.headers["retry-after"]


async def test_real_errors_of_the_openai_face(live: Live) -> None:
    async with AsyncOpenAI(base_url=f"{live.url}/v1", api_key=live.token, max_retries=0, timeout=20) as sdk:
        cases: list[tuple[dict[str, Any], type[openai.APIStatusError], str]] = [
            ({"model": "nope"}, openai.NotFoundError, "unknown_model"),
            ({"model": "gpt-5-mini"}, openai.PermissionDeniedError, "no_key"),
            ({"model": "mock", "n": 2}, openai.BadRequestError, "unsupported_parameter"),
            ({"model": "mock", "temperature": 7}, openai.BadRequestError, "invalid_request"),
            ({"model": "mock", "extra_body": {"frobnicate": 1}}, openai.BadRequestError, "unsupported_parameter"),
            (
                {"model": "mock", "content": "no [[mock fail_after=0 fail=bad_request]]"},
                openai.BadRequestError,
                "bad_request",
            ),
            (
                {"model": "mock", "content": "doomed [[mock tokens=9 fail_after=2]]"},
                openai.InternalServerError,
                "all_models_failed",
            ),
        ]
        for case, error, code in cases:
            content = case.pop("content", "hi")
            with pytest.raises(error) as raised:
                await sdk.chat.completions.create(messages=user_msg(content), **case)  # type: ignore[call-overload]
            row = TABLE[CODES[code]]
            assert (raised.value.status_code, raised.value.code, raised.value.type) == (
                row.api_status or row.status,
                code,
                row.openai,
            )
            if code in ("unsupported_parameter", "invalid_request"):  # the field, by name
                field = next(k for k in case if k != "model")
                assert raised.value.param == ("frobnicate" if field == "extra_body" else field)
    async with AsyncOpenAI(base_url=f"{live.url}/v1", api_key="not-a-token", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as refused:
            await bad.chat.completions.create(model="mock", messages=user_msg("hi"))  # type: ignore[arg-type]
    assert (refused.value.code, refused.value.type) == ("invalid_token", "authentication_error")


async def test_real_errors_of_the_socket(live: Live) -> None:
    anon = live.services.auth.mint_dev_token(role="anon")
    for headers, close, reason in [
        ({"authorization": "Bearer nope"}, 4401, "invalid_token"),
        ({"authorization": f"Bearer {anon}"}, 4401, "anon_refused"),
        ({**live.headers(), "origin": "https://elsewhere.example"}, 4403, "origin_forbidden"),
    ]:
        async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=headers) as ws:
            with pytest.raises(websockets.ConnectionClosed) as info:
                await ws.recv()
        assert info.value.rcvd is not None and (info.value.rcvd.code, info.value.rcvd.reason) == (close, reason)
    async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=live.headers()) as ws:
        for frame in ({"type": "nope", "id": "a"}, {"type": "chat.resume", "id": "b", "stream_id": "st_x"}):
            await ws.send(json.dumps(frame))
        got = [json.loads(await ws.recv()) for _ in range(2)]
    assert [(f["id"], f["code"], f["frame"], f["stream_id"]) for f in got] == [
        ("a", "unknown_type", "nope", None),
        ("b", "stream_not_found", "chat.resume", None),
    ]


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator() as e:
        yield e


async def test_a_provider_saying_when_to_retry_is_passed_on(live_factory: Callable[..., Any], emu: Emulator) -> None:
    gw: Live = await live_factory(**emulated(emu))
    # Over 10 s the router moves on rather than wait; with no fallback the stream fails, and says when to retry.
    emu.script(Script(status=429, retry_after=30), Script(status=429, retry_after=30), model="gpt-5-mini")
    async with AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=gw.token, max_retries=0, timeout=20) as sdk:
        with pytest.raises(openai.RateLimitError) as raised:
            await sdk.chat.completions.create(
                model="gpt-5-mini",
                messages=user_msg("hi"),
                extra_body={"fallbacks": []},  # type: ignore[arg-type]
            )
    # Every model asked was rate limited: 429, not 502, and when to retry.
    assert (raised.value.status_code, raised.value.code) == (429, "all_models_rate_limited")
    assert raised.value.response.headers["retry-after"] == "30"
    events = await ws_stream(gw, {"model": "gpt-5-mini", "fallbacks": [], "messages": user_msg("hi")})
    assert events[-1]["type"] == "error" and events[-1]["code"] == "all_models_rate_limited"
    assert events[-1]["retry_after_s"] == 30 and events[-1]["retryable"] is True
    # The same over a stream, which fails before its answer began: the status is the error's own.
    emu.script(Script(status=429, retry_after=30), Script(status=429, retry_after=30), model="gpt-5-mini")
    async with AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=gw.token, max_retries=0, timeout=20) as sdk:
        with pytest.raises(openai.RateLimitError) as streamed:
            await sdk.chat.completions.create(
                model="gpt-5-mini",
                messages=user_msg("hi"),
                stream=True,
                extra_body={"fallbacks": []},  # type: ignore[arg-type]
            )
    assert streamed.value.response.headers["retry-after"] == "30"
