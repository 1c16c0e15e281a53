"""The OpenAPI document tells the truth: schemathesis fuzzes every operation of a live gateway with a real token
and fails on any 5xx and any answer (status, content type, body) the document does not describe; real answers of
the streaming and JSON routes are checked against it too."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.auth import VERIFY_CODES
from gateway.errors import Face
from gateway.tickets import REDEEM_CODES
from tests.conftest import Live
from tests.support.clients import user_msg

ROOT = Path(__file__).resolve().parent.parent
CHECKS = os.environ.get("GATEWAY_TEST_SCHEMATHESIS_CHECKS") or (
    "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
    "response_headers_conformance"
)
# Endless by design (live spend until the client leaves): checked below with a client that leaves.
ENDLESS = "/v1/usage/stream"


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_schemathesis_finds_no_answer_the_document_does_not_describe(live: Live, tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{live.url}/openapi.json",
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        os.environ.get("GATEWAY_TEST_SCHEMATHESIS_EXAMPLES", "50"),
        "--seed",
        os.environ.get("GATEWAY_TEST_SCHEMATHESIS_SEED", "1"),  # another seed explores other inputs
        # One worker: hypothesis parses lambdas' source with `ast`, which two threads at once can break on 3.11.
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--generation-with-security-parameters",
        "false",
        "--request-timeout",
        "20",
        "--exclude-path",
        ENDLESS,
        "--header",
        f"Authorization: Bearer {live.token}",
        "--no-color",
        "--report-dir",
        str(tmp_path / "report"),
    ]
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 220)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text
    async with httpx.AsyncClient(base_url=live.url) as client:
        operations = sum(len(ops) for ops in (await client.get("/openapi.json")).json()["paths"].values())
    tested = re.search(r"Tested: (\d+)", text)
    assert tested is not None and int(tested.group(1)) == operations - 1, text  # every one but the endless one
    assert re.search(r"(\d{3,}) generated, \1 passed", text), text


VALIDATE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
FALLBACK = "tell me [[mock tokens=12 fail_after=5 only=mock]]"


class Checked:
    """Real requests through httpx, each answer validated against the live document as schemathesis does."""

    def __init__(self, live: Live, client: httpx.AsyncClient, doc: dict[str, Any]) -> None:
        self.live = live
        self.client = client
        self.doc = doc
        self.schema = schemathesis.openapi.from_dict(doc)

    async def call(
        self,
        method: str,
        path: str,
        *,
        path_parameters: dict[str, Any] | None = None,
        query: dict[str, Any] | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        upstream_fails: bool = False,
    ) -> httpx.Response:
        hdrs = {**self.live.headers(), **(headers or {})}
        extra: dict[str, Any] = {} if body is None else {"body": body, "media_type": "application/json"}
        case = self.schema[path][method].Case(path_parameters=path_parameters, query=query, headers=hdrs, **extra)
        url = path.format(**(path_parameters or {}))
        response = await self.client.request(method, url, params=query, json=body, headers=hdrs)
        # A failing upstream is a 5xx by design: the rest of the answer is still checked.
        checks = [c for c in VALIDATE if c is not not_a_server_error] if upstream_fails else VALIDATE
        case.validate_response(response, checks=checks)
        return response


@pytest.fixture
async def checked(live: Live) -> Any:
    async with httpx.AsyncClient(base_url=live.url, timeout=20) as client:
        doc = (await client.get("/openapi.json")).json()
        yield Checked(live, client, doc)


async def test_streams_answer_as_the_document_says(checked: Checked) -> None:
    chat = {"model": "mock", "fallbacks": ["mock-backup"], "messages": user_msg(FALLBACK)}
    r = await checked.call("POST", "/v1/chat/stream", body=chat)
    assert r.status_code == 200 and b"event: fallback" in r.content and b"event: done" in r.content
    sid = r.headers["x-stream-id"]
    replay = await checked.call("GET", "/v1/streams/{stream_id}/events", path_parameters={"stream_id": sid})
    assert replay.status_code == 200 and replay.content.count(b"event: delta") > 5
    cancel = await checked.call("POST", "/v1/streams/{stream_id}/cancel", path_parameters={"stream_id": sid})
    assert cancel.json() == {"stream_id": sid, "cancelled": False, "status": "finished"}
    gone = await checked.call(
        "GET", "/v1/streams/{stream_id}/events", path_parameters={"stream_id": sid}, query={"after": "x"}
    )
    assert gone.status_code == 400 and gone.json()["error"]["code"] == "invalid_cursor"


async def test_chat_completions_answer_as_the_document_says(checked: Checked) -> None:
    body = {"model": "mock", "fallbacks": ["mock-backup"], "messages": user_msg(FALLBACK)}
    plain = await checked.call("POST", "/v1/chat/completions", body=body)
    gateway = plain.json()["gateway"]
    assert gateway["fallbacks"][0]["to_model"] == "mock-backup" and len(gateway["segments"]) == 2
    streamed = await checked.call(
        "POST", "/v1/chat/completions", body={**body, "stream": True, "stream_options": {"include_usage": True}}
    )
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert streamed.content.rstrip().endswith(b"data: [DONE]")
    failing = {"model": "mock", "fallbacks": [], "messages": user_msg("[[mock fail_after=0 fail=auth_failed]]")}
    failed = await checked.call("POST", "/v1/chat/completions", body=failing, upstream_fails=True)
    assert failed.status_code == 502 and failed.json()["error"]["code"] == "all_models_failed"
    unknown = await checked.call("POST", "/v1/chat/completions", body={**body, "model": "no-such-model"})
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "not_found_error"


async def test_json_routes_answer_as_the_document_says(checked: Checked) -> None:
    await checked.call("POST", "/v1/chat/stream", body={"model": "mock", "messages": user_msg("hi")})
    report = await checked.call("GET", "/v1/usage", query={"recent": 3})
    assert report.json()["recent"] and report.json()["totals"]["streams"] >= 1
    assert "recent" not in (await checked.call("GET", "/v1/usage")).json()  # only when asked
    await checked.call("GET", "/v1/usage/streams", query={"limit": 2})
    cap = await checked.call("PUT", "/v1/budget", body={"daily_usd": 1e-7, "monthly_usd": 1e3})
    assert (cap.json()["daily_usd"], cap.json()["monthly_usd"]) == ("0.0000001", "1000")  # never "1E-7"
    await checked.call("GET", "/v1/budget")
    await checked.call(
        "PUT", "/v1/keys/{provider}", path_parameters={"provider": "openai"}, body={"api_key": "sk-test-1234567890"}
    )
    await checked.call("GET", "/v1/keys/{provider}", path_parameters={"provider": "openai"})
    await checked.call("GET", "/v1/keys")
    await checked.call("DELETE", "/v1/keys/{provider}", path_parameters={"provider": "openai"})
    missing = await checked.call("GET", "/v1/keys/{provider}", path_parameters={"provider": "openai"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "key_not_found"
    await checked.call("GET", "/v1/models")
    ticket = await checked.call("POST", "/v1/tickets")
    assert ticket.status_code == 201 and ticket.headers["cache-control"] == "no-store"
    assert (await checked.call("GET", "/metrics")).headers["content-type"].startswith("text/plain")
    assert (await checked.call("GET", "/readyz")).json() == {"status": "ready"}
    refused = await checked.call("GET", "/v1/models", headers={"authorization": "Bearer nope"})
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"


async def test_live_spend_is_an_event_stream_and_its_refusals_are_documented(checked: Checked, live: Live) -> None:
    declared = checked.doc["paths"][ENDLESS]["get"]["responses"]["200"]["content"]
    async with checked.client.stream("GET", ENDLESS, headers=live.headers()) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].split(";")[0] in declared
        assert await anext(r.aiter_lines()) == "retry: 3000"
    other = await checked.call("GET", ENDLESS, query={"user_id": "someone-else"})
    assert other.status_code == 403 and other.json()["error"]["code"] == "forbidden"
    without = await checked.call("GET", ENDLESS, headers={"authorization": ""})
    assert without.status_code == 401 and without.json()["error"]["code"] == "missing_token"


def test_declared_caller_codes_are_every_code_the_caller_checks_raise() -> None:
    """The codes the document lists for a caller are those its checks can raise (read from their source)."""
    for module, declared in (("gateway/auth.py", VERIFY_CODES), ("gateway/tickets.py", REDEEM_CODES)):
        raised = set(re.findall(r'fail\(\s*"([a-z_]+)"', (ROOT / module).read_text()))
        assert raised <= set(declared), (module, raised - set(declared))
    cluster = set(re.findall(r'fail\(\s*"([a-z_]+)"', (ROOT / "gateway/cluster/tickets.py").read_text()))
    assert cluster <= set(REDEEM_CODES)


async def test_the_document_names_security_errors_and_media_types(live: Live) -> None:
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        doc = (await client.get("/openapi.json")).json()
    paths = doc["paths"]
    assert "/v1/ws" not in paths and "/" not in paths and "/dashboard" not in paths  # socket and pages: not HTTP APIs
    assert set(doc["components"]["securitySchemes"]) == {"bearer", "api_key", "ticket", "metrics_token"}
    assert paths["/v1/messages"]["post"]["security"] == [{"api_key": []}, {"bearer": []}]
    assert "HTTPValidationError" not in doc["components"]["schemas"]  # FastAPI's body, which is never sent
    for path, method in (("/v1/chat/stream", "post"), ("/v1/streams/{stream_id}/events", "get"), (ENDLESS, "get")):
        assert list(paths[path][method]["responses"]["200"]["content"]) == ["text/event-stream"], path
    assert set(paths["/v1/chat/completions"]["post"]["responses"]["200"]["content"]) == {
        "application/json",
        "text/event-stream",
    }
    assert paths["/v1/streams/{stream_id}/events"]["get"]["security"] == [{"bearer": []}, {"ticket": []}]
    assert paths["/metrics"]["get"]["security"] == [{}, {"metrics_token": []}]
    assert "security" not in paths["/healthz"]["get"]
    stream = paths["/v1/chat/stream"]["post"]["responses"]
    for status, codes in (("401", "missing_token"), ("402", "budget_exceeded"), ("404", "unknown_model")):
        assert codes in stream[status]["description"], status
    assert stream["401"]["headers"]["WWW-Authenticate"]["required"] is True
    # Each listed code answers with the status it is listed under, in the face's body.
    from gateway.errors import status_of
    from sessions.errors import CODES, GatewayError

    for path, ops in paths.items():
        for method, op in ops.items():
            for status, answer in op["responses"].items():
                if int(status) < 400 or "allOf" not in answer["content"]["application/json"]["schema"]:
                    continue
                body, narrowed = answer["content"]["application/json"]["schema"]["allOf"]
                codes = narrowed["properties"]["error"]["properties"].get("code", {}).get("enum", [])
                face = face_of(path)
                if face == "anthropic":  # its body names a type, not a code: the type and the status agree
                    types = narrowed["properties"]["error"]["properties"]["type"]["enum"]
                    assert types, (path, method, status)
                assert all(status_of(GatewayError(CODES[c], c, ""), face) == int(status) for c in codes), (
                    path,
                    method,
                    status,
                )
                assert body == {"$ref": f"#/components/schemas/{BODIES[face]}"}, (path, method)


OPENAI_PATHS = ("/v1/chat/completions", "/v1/responses")
BODIES = {"openai": "OpenAIErrorBody", "anthropic": "AnthropicErrorBody", "gateway": "GatewayErrorBody"}


def face_of(path: str) -> Face:
    if path.startswith("/v1/messages"):
        return "anthropic"
    return "openai" if path.startswith(OPENAI_PATHS) else "gateway"


def test_every_event_type_has_its_json_in_the_document() -> None:
    from gateway.replies import EVENT_DATA
    from sessions.events import EVENT_TYPES

    assert set(EVENT_DATA) == {t.TYPE for t in EVENT_TYPES}
    assert all(EVENT_DATA[t.TYPE].model_fields["type"].annotation.__args__ == (t.TYPE,) for t in EVENT_TYPES)


async def test_the_client_id_header_is_declared_and_held_to_it(checked: Checked) -> None:
    body = {"model": "mock", "messages": user_msg("hi")}
    r = await checked.call("POST", "/v1/chat/stream", body=body, headers={"x-client-id": "c-1"})
    assert b'"id":"c-1"' in r.content
    long = await checked.call("POST", "/v1/chat/stream", body=body, headers={"x-client-id": "x" * 129})
    assert long.status_code == 422 and "x-client-id" in long.json()["error"]["message"]
    names = {p["name"] for p in checked.doc["paths"]["/v1/chat/completions"]["post"]["parameters"]}
    assert "x-client-id" in names
