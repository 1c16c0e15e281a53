"""BYOK over HTTP: store, list, replace, delete; a stream that uses the stored key; and a scan of every log
record and every response body for the key itself."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from providers import errors
from providers.base import ChatRequest, Credential
from providers.events import Finish, ProviderEvent, TextDelta, Usage
from tests.conftest import Live
from tests.support.clients import collect_sse, text_of, user_msg

USER_KEY = "sk-proj-UserOwnKey-9f8e7d6c5b4a39281706f5e4d3c2b1a0-Zz9q"
OTHER_USER = "5f0b7a1e-3c2d-4e8f-9a6b-1c2d3e4f5a6b"
KEYED_MODELS = json.dumps(
    [{"id": "keyed-1", "provider": "keyed", "upstream": "keyed-up", "price": {"input": 1, "output": 2}}]
)


class KeyedProvider:
    """Answers only with the right key, and (like some real upstreams) echoes a wrong key in its error."""

    name = "keyed"

    def __init__(self) -> None:
        self.seen: list[Credential] = []

    async def stream(
        self, request: ChatRequest, upstream_model: str, credential: Credential
    ) -> AsyncIterator[ProviderEvent]:
        self.seen.append(credential)
        if credential.api_key != USER_KEY:
            raise errors.AuthFailed(f"Incorrect API key provided: {credential.api_key}", provider="keyed")
        for word in ("paid", "with", "your", "own", "key"):
            yield TextDelta(word + " ")
        yield Usage(10, 5)
        yield Finish("stop")

    async def aclose(self) -> None:
        return None


async def stream(http: httpx.AsyncClient, model: str, prompt: str = "hi") -> list[dict[str, Any]]:
    sse = await collect_sse(http, "POST", "/v1/chat/stream", json={"model": model, "messages": user_msg(prompt)})
    return [e.data for e in sse]


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        out = []
        for r in self.records:
            out.append(r.getMessage())
            out.append(repr(r.__dict__))
            if r.exc_info:
                out.append(logging.Formatter().formatException(r.exc_info))
        return "\n".join(out)


@pytest.fixture
def captured() -> Iterator[Capture]:
    handler = Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


@pytest.fixture
async def keyed(live_factory: Any) -> tuple[Live, KeyedProvider]:
    live: Live = await live_factory(gateway_models=KEYED_MODELS)
    provider = KeyedProvider()
    live.services.providers["keyed"] = provider  # the router reads this same mapping
    return live, provider


async def test_put_list_get_replace_delete(keyed: tuple[Live, KeyedProvider]) -> None:
    live, _ = keyed
    async with httpx.AsyncClient(base_url=live.url, headers=live.headers()) as http:
        assert (await http.get("/v1/keys")).json() == {"object": "list", "data": []}
        r = await http.put("/v1/keys/openai", json={"api_key": USER_KEY})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["provider"] == "openai" and body["hint"] == "sk-proj-…Zz9q"
        assert set(body) == {"provider", "hint", "created_at", "updated_at"}
        await http.put("/v1/keys/anthropic", json={"api_key": "sk-ant-api03-" + "x" * 40})
        listed = (await http.get("/v1/keys")).json()["data"]
        assert [k["provider"] for k in listed] == ["anthropic", "openai"]
        assert (await http.get("/v1/keys/openai")).json()["hint"] == "sk-proj-…Zz9q"

        replaced = (await http.put("/v1/keys/openai", json={"api_key": "sk-proj-second-key-000000001111"})).json()
        assert replaced["hint"] == "sk-proj-…1111" and replaced["created_at"] == body["created_at"]

        assert (await http.delete("/v1/keys/openai")).json() == {"provider": "openai", "deleted": True}
        missing = await http.delete("/v1/keys/openai")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "key_not_found"
        assert (await http.get("/v1/keys/openai")).status_code == 404
        assert [k["provider"] for k in (await http.get("/v1/keys")).json()["data"]] == ["anthropic"]


async def test_keys_are_per_user(keyed: tuple[Live, KeyedProvider]) -> None:
    live, _ = keyed
    other = live.services.auth.mint_dev_token(OTHER_USER)
    async with httpx.AsyncClient(base_url=live.url) as http:
        await http.put("/v1/keys/openai", json={"api_key": USER_KEY}, headers=live.headers())
        assert (await http.get("/v1/keys", headers=live.headers(other))).json()["data"] == []
        r = await http.delete("/v1/keys/openai", headers=live.headers(other))
        assert r.status_code == 404
        assert len((await http.get("/v1/keys", headers=live.headers())).json()["data"]) == 1


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/v1/keys/nosuch", {"api_key": USER_KEY}, 404, "unknown_provider"),
        ("/v1/keys/mock", {"api_key": USER_KEY}, 404, "unknown_provider"),
        ("/v1/keys/openai", {"api_key": "short"}, 422, "invalid_request"),
        ("/v1/keys/openai", {"api_key": USER_KEY, "extra": USER_KEY}, 422, "invalid_request"),
        ("/v1/keys/openai", {"api_key": USER_KEY[:20] + " " + USER_KEY[20:]}, 422, "invalid_request"),
        ("/v1/keys/openai", {"key": USER_KEY}, 422, "invalid_request"),
        ("/v1/keys/openai", "not json " + USER_KEY, 422, "invalid_json"),
    ],
)
async def test_bad_requests_never_echo_the_key(
    keyed: tuple[Live, KeyedProvider], path: str, body: Any, status: int, code: str
) -> None:
    live, _ = keyed
    async with httpx.AsyncClient(base_url=live.url, headers=live.headers()) as http:
        if isinstance(body, str):
            r = await http.put(path, content=body, headers={"content-type": "application/json"})
        else:
            r = await http.put(path, json=body)
    assert r.status_code == status and r.json()["error"]["code"] == code, r.text
    assert USER_KEY[8:30] not in r.text


async def test_keys_need_a_token(keyed: tuple[Live, KeyedProvider]) -> None:
    live, _ = keyed
    async with httpx.AsyncClient(base_url=live.url) as http:
        assert (await http.get("/v1/keys")).status_code == 401
        assert (await http.put("/v1/keys/openai", json={"api_key": USER_KEY})).status_code == 401


async def test_the_key_is_stored_encrypted(keyed: tuple[Live, KeyedProvider]) -> None:
    live, _ = keyed
    async with httpx.AsyncClient(base_url=live.url, headers=live.headers()) as http:
        await http.put("/v1/keys/openai", json={"api_key": USER_KEY})
    db = live.services.settings.gateway_data_dir / "gateway.sqlite3"
    with sqlite3.connect(db) as conn:
        [(ciphertext, key_id)] = conn.execute("select ciphertext, key_id from user_secrets").fetchall()
    ring = live.services.keys.ring
    assert key_id == ring.current_kid and ciphertext.startswith(key_id + ":")
    assert USER_KEY not in ciphertext and USER_KEY[10:30] not in ciphertext
    raw = db.read_bytes() + (
        db.with_name(db.name + "-wal").read_bytes() if db.with_name(db.name + "-wal").exists() else b""
    )
    assert USER_KEY.encode() not in raw


async def test_a_stream_uses_the_stored_key_and_the_key_never_shows_up_anywhere(
    keyed: tuple[Live, KeyedProvider], captured: Capture
) -> None:
    live, provider = keyed
    bodies: list[str] = []
    async with httpx.AsyncClient(base_url=live.url, headers=live.headers(), timeout=20) as http:
        # No key yet: refused before any upstream call.
        r = await http.post("/v1/chat/stream", json={"model": "keyed-1", "messages": user_msg("hi")})
        bodies.append(r.text)
        assert r.status_code == 403 and r.json()["error"]["code"] == "no_key"
        assert provider.seen == []

        r = await http.put("/v1/keys/keyed", json={"api_key": USER_KEY})
        bodies.append(r.text)
        assert r.status_code == 200

        events = await stream(http, "keyed-1")
        bodies.append(json.dumps(events))
        assert text_of(events) == "paid with your own key "
        assert events[-1]["type"] == "done"
        assert provider.seen[-1].source == "user" and provider.seen[-1].api_key == USER_KEY

        # A wrong key makes the upstream echo it in its error: the client must not get it back.
        r = await http.put("/v1/keys/keyed", json={"api_key": "sk-proj-WRONG-" + USER_KEY[14:]})
        bodies.append(r.text)
        events = await stream(http, "keyed-1")
        bodies.append(json.dumps(events))
        assert events[-1]["type"] == "error"

        for path in ("/v1/keys", "/v1/keys/keyed", "/v1/models", "/v1/usage", "/v1/usage/streams"):
            r = await http.get(path)
            bodies.append(r.text)
        await live.services.ledger.flush()

    wrong = "sk-proj-WRONG-" + USER_KEY[14:]
    everything = "\n".join(bodies) + "\n" + captured.text()
    assert captured.records, "no logs were captured: the scan would prove nothing"
    for secret in (USER_KEY, wrong, USER_KEY[14:40]):
        assert secret not in everything
    assert "sk-proj-…Zz9q" in everything  # the hint is what a user sees instead


# -- through an official SDK against the provider emulator -------------------------------------------

OPERATOR_KEY = "sk-operator-key-for-everyone-0000OPER"


async def test_the_users_key_goes_upstream_through_the_openai_sdk_before_the_operators(
    live_factory: Any, captured: Capture
) -> None:
    from tests.emulators import Emulator, Script

    async with Emulator() as emu:
        live: Live = await live_factory(
            openai_base_url=emu.openai_base_url,
            openai_api_key=OPERATOR_KEY,
            gateway_allow_operator_keys=True,
        )
        frame = {"model": "gpt-5-mini", "fallbacks": [], "messages": user_msg("hello"), "max_tokens": 20}
        bodies: list[str] = []
        async with httpx.AsyncClient(base_url=live.url, headers=live.headers(), timeout=20) as http:
            emu.script(Script(text=("operator", " pays")), model="gpt-5-mini")
            sse = await collect_sse(http, "POST", "/v1/chat/stream", json=frame)
            assert sse[-1].data["type"] == "done" and emu.last.key_suffix == OPERATOR_KEY[-4:]

            r = await http.put("/v1/keys/openai", json={"api_key": USER_KEY})
            assert r.status_code == 200
            emu.script(Script(text=("you", " pay")), model="gpt-5-mini")
            sse = await collect_sse(http, "POST", "/v1/chat/stream", json=frame)
            bodies.append(json.dumps([e.data for e in sse]))
            assert sse[-1].data["type"] == "done" and emu.last.key_suffix == USER_KEY[-4:]

            # The upstream refuses the key and says so, quoting it: nothing of it reaches the client or the logs.
            emu.script(Script(status=401, error_message=f"Incorrect API key provided: {USER_KEY}"), model="gpt-5-mini")
            sse = await collect_sse(http, "POST", "/v1/chat/stream", json=frame)
            bodies.append(json.dumps([e.data for e in sse]))
            assert sse[-1].data["type"] == "error"

            await http.delete("/v1/keys/openai")
            emu.script(Script(text=("operator", " again")), model="gpt-5-mini")
            sse = await collect_sse(http, "POST", "/v1/chat/stream", json=frame)
            assert sse[-1].data["type"] == "done" and emu.last.key_suffix == OPERATOR_KEY[-4:]
        everything = "\n".join(bodies) + "\n" + captured.text()
        assert USER_KEY not in everything and USER_KEY[14:40] not in everything


async def test_a_key_row_copied_to_another_user_does_not_decrypt_for_them(
    keyed: tuple[Live, KeyedProvider], captured: Capture
) -> None:
    live, provider = keyed
    async with httpx.AsyncClient(base_url=live.url, timeout=20) as http:
        await http.put("/v1/keys/keyed", json={"api_key": USER_KEY}, headers=live.headers())
        db = live.services.settings.gateway_data_dir / "gateway.sqlite3"
        with sqlite3.connect(db) as conn:  # someone with database access copies the row to their own account
            conn.execute(
                "insert into user_secrets select ?, provider, ciphertext, key_id, hint, created_at, updated_at "
                "from user_secrets where provider = 'keyed'",
                (OTHER_USER,),
            )
        other = live.headers(live.services.auth.mint_dev_token(OTHER_USER))
        listed = (await http.get("/v1/keys", headers=other)).json()["data"]
        assert [k["provider"] for k in listed] == ["keyed"]  # the row is there...
        r = await http.post("/v1/chat/stream", json={"model": "keyed-1", "messages": user_msg("hi")}, headers=other)
        assert r.status_code == 403 and r.json()["error"]["code"] == "no_key"  # ...but it is useless to them
        assert provider.seen == []
        # The owner still streams with it.
        async with httpx.AsyncClient(base_url=live.url, headers=live.headers(), timeout=20) as owner:
            events = await stream(owner, "keyed-1")
        assert events[-1]["type"] == "done"
    failures = [r for r in captured.records if r.getMessage() == "stored key cannot be decrypted"]
    assert failures and getattr(failures[0], "user_id", None) == OTHER_USER
    assert "another user or provider" in failures[0].error  # type: ignore[attr-defined]
    assert USER_KEY not in captured.text()


async def test_models_show_what_a_stored_key_unlocks(keyed: tuple[Live, KeyedProvider]) -> None:
    live, _ = keyed

    async def availability(http: httpx.AsyncClient) -> dict[str, bool]:
        return {m["id"]: m["available"] for m in (await http.get("/v1/models")).json()["data"]}

    async with httpx.AsyncClient(base_url=live.url, headers=live.headers()) as http:
        before = await availability(http)
        assert before["gpt-5-mini"] is False and before["mock"] is True
        await http.put("/v1/keys/openai", json={"api_key": USER_KEY})
        after = await availability(http)
        assert after["gpt-5-mini"] is True and after["gpt-5"] is True and after["claude-sonnet-4-5"] is False
        await http.delete("/v1/keys/openai")
        assert (await availability(http))["gpt-5-mini"] is False
