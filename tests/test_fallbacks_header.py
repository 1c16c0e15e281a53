"""`x-gateway-fallbacks`: the chain for SDKs that cannot add a body field, on each SDK face; the same chain in
both places is fine, two different ones are refused by name."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import Live

FAILING = "A story. [[mock tokens=20 fail_after=5 only=mock]]"


async def test_the_header_sets_the_chain_on_each_face(live: Live) -> None:
    header = {"x-gateway-fallbacks": "mock-backup"}
    async with openai.AsyncOpenAI(base_url=f"{live.url}/v1", api_key=live.token, max_retries=0) as sdk:
        chat = await sdk.chat.completions.create(
            model="mock", messages=[{"role": "user", "content": FAILING}], extra_headers=header
        )
        assert [f["to_model"] for f in chat.model_extra["gateway"]["fallbacks"]] == ["mock-backup"]  # type: ignore[index]
        resp = await sdk.responses.create(model="mock", input=FAILING, extra_headers=header)
        assert [f["to_model"] for f in resp.model_extra["gateway"]["fallbacks"]] == ["mock-backup"]  # type: ignore[index]
        # None at all: the failure is the answer.
        with pytest.raises(openai.APIStatusError) as failed:
            await sdk.chat.completions.create(
                model="mock", messages=[{"role": "user", "content": FAILING}], extra_headers={"x-gateway-fallbacks": ""}
            )
        assert failed.value.status_code == 502
    async with anthropic.AsyncAnthropic(base_url=live.url, api_key=live.token, max_retries=0) as claude:
        msg = await claude.messages.create(
            model="mock", max_tokens=100, messages=[{"role": "user", "content": FAILING}], extra_headers=header
        )
        assert [f["to_model"] for f in msg.model_extra["gateway"]["fallbacks"]] == ["mock-backup"]  # type: ignore[index]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses", "/v1/messages"])
async def test_two_different_chains_are_refused_by_name(live: Live, path: str) -> None:
    body: dict[str, Any] = {"model": "mock", "fallbacks": ["mock-backup"], "max_tokens": 50}
    if path == "/v1/responses":
        body |= {"input": "hi"}
        del body["max_tokens"]
    else:
        body["messages"] = [{"role": "user", "content": "hi"}]
    headers = live.headers() | {"x-gateway-fallbacks": "mock"}
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        refused = await http.post(path, json=body, headers=headers)
        same = await http.post(path, json=body, headers=live.headers() | {"x-gateway-fallbacks": "mock-backup"})
        many = await http.post(
            path,
            json=body | {"fallbacks": None},
            headers=live.headers() | {"x-gateway-fallbacks": ",".join(["mock"] * 9)},
        )
    assert refused.status_code == 400, refused.text
    assert "given in the body and in x-gateway-fallbacks" in refused.json()["error"]["message"]
    assert same.status_code == 200, same.text
    assert many.status_code == 400 and "at most 8" in many.json()["error"]["message"]
