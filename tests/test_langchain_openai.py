"""`langchain-openai`'s ChatOpenAI pointed at the gateway: structured output in its three methods (json_schema,
json_mode, function_calling) on each provider, and a tool loop with `bind_tools`, streaming and not."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, SecretStr

from tests.conftest import Live
from tests.emulators import Emulator, Script, ToolCallScript
from tests.support.fallback import FIRST, PROVIDERS
from tests.support.openai_sdk import emulated_gateway

pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")


class Fox(BaseModel):
    name: str
    facts: list[str]


FOX = {"name": "red fox", "facts": ["small omnivore", "hunts at dusk"]}


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}."


@pytest.fixture
async def live(emu: Emulator, live_factory: Callable[..., Any]) -> Live:
    return await emulated_gateway(emu, live_factory)


def chat(live: Live, model: str, **kw: Any) -> ChatOpenAI:
    return ChatOpenAI(
        model=model,
        base_url=f"{live.url}/v1",
        api_key=SecretStr(live.token),
        max_retries=0,
        timeout=20,
        **{"extra_body": {"fallbacks": []}, **kw},
    )


ASK: list[BaseMessage] = [SystemMessage("Be brief; answer in JSON."), HumanMessage("Tell me about foxes.")]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("method", ["json_schema", "json_mode", "function_calling"])
async def test_with_structured_output(emu: Emulator, live: Live, provider: str, method: str) -> None:
    model = FIRST[provider]
    emu.default(Script(json=FOX))
    if method == "function_calling":
        # The method asks for one call at a time (parallel_tool_calls false), which Gemini cannot promise: it is
        # refused by name there, unless the request is lenient.
        emu.default(Script(tool_call=ToolCallScript("Fox", ('{"name":"red fox",', '"facts":["small omnivore"]}'))))
    lenient = provider == "gemini" and method == "function_calling"
    llm = chat(live, model, extra_body={"fallbacks": [], "strict_params": not lenient}, include_response_headers=True)
    structured = llm.with_structured_output(Fox, method=method, include_raw=True)  # type: ignore[arg-type]
    out: Any = await structured.ainvoke(ASK)
    assert out["parsing_error"] is None, out
    fox = out["parsed"]
    if method == "function_calling":
        assert fox == Fox(name="red fox", facts=["small omnivore"])
    else:
        assert fox == Fox(**FOX)
    body = emu.requests[-1].body
    assert emu.requests[-1].rejected is None
    raw: AIMessage = out["raw"]
    dropped = raw.response_metadata["headers"].get("x-gateway-dropped-params")
    assert dropped == ("parallel_tool_calls" if lenient else None)
    if provider == "openai" and method == "json_schema":
        assert body["response_format"]["json_schema"]["name"] == "Fox"


async def test_function_calling_on_gemini_is_refused_by_name_when_strict(emu: Emulator, live: Live) -> None:
    import openai

    structured = chat(live, "gemini-2.5-flash").with_structured_output(Fox, method="function_calling")
    with pytest.raises(openai.BadRequestError) as refused:
        await structured.ainvoke(ASK)
    assert (refused.value.code, refused.value.param) == ("unsupported_parameter", "parallel_tool_calls")
    assert emu.requests == []


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("streaming", [False, True])
async def test_a_tool_loop_with_bind_tools(emu: Emulator, live: Live, provider: str, streaming: bool) -> None:
    model = FIRST[provider]
    emu.script(Script(tool_call=ToolCallScript("get_weather", ('{"city":', '"Paris"}')), finish="tool_calls"))
    emu.script(Script(text=("It", " is", " sunny.")))
    llm = chat(live, model, streaming=streaming).bind_tools([get_weather])
    history: list[BaseMessage] = [HumanMessage("Weather in Paris?")]
    first = await llm.ainvoke(history)
    assert isinstance(first, AIMessage) and [c["name"] for c in first.tool_calls] == ["get_weather"]
    assert first.tool_calls[0]["args"] == {"city": "Paris"}
    history.append(first)
    history.append(await get_weather.ainvoke(first.tool_calls[0]))  # a ToolMessage (with the tool's name)
    final = await llm.ainvoke(history)
    assert final.content == "It is sunny." and not getattr(final, "tool_calls", None)
    second = emu.requests[-1]
    assert second.rejected is None
    text = str(second.body)
    assert "Sunny in Paris." in text  # the tool's result reached the provider
