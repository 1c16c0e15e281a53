"""`sessions.fit`: a request fitted to its chain. Strict refuses what the first model cannot take, naming the field
and the model; lenient leaves it out and says so; a fallback that cannot take what remains is left out by name."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from providers.base import ChatRequest, Message, Reasoning, ResponseFormat, ToolChoice, ToolSpec
from providers.capabilities import RESPONSES_FIELDS, unsupported
from providers.catalog import Catalog
from sessions.errors import GatewayError
from sessions.fit import DroppedParam, LeftOut, ParamPolicy, fit

CATALOG = Catalog.build()
BASE = ChatRequest((Message("user", "hi"),), max_tokens=2000)
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}


def chain(*ids: str) -> list[Any]:
    return [CATALOG.resolve(m) for m in ids]


def req(**kw: Any) -> ChatRequest:
    return replace(BASE, **kw)


def test_strict_refuses_naming_every_field_and_the_model() -> None:
    with pytest.raises(GatewayError) as raised:
        fit(req(temperature=0.2, presence_penalty=0.5), chain("gpt-5-mini"), ParamPolicy(strict=True))
    err = raised.value
    assert (err.code, err.kind) == ("unsupported_parameter", "bad_request")
    assert err.details == {"param": "temperature", "model": "gpt-5-mini"}
    assert err.message == (
        "temperature: gpt-5-mini takes only the default temperature (1); "
        "presence_penalty: gpt-5-mini takes no presence penalty"
    )


def test_a_face_names_fields_its_own_way() -> None:
    with pytest.raises(GatewayError) as raised:
        fit(req(reasoning=Reasoning("xhigh")), chain("gpt-5-mini"), ParamPolicy(True, RESPONSES_FIELDS))
    assert raised.value.details == {"param": "reasoning.effort", "model": "gpt-5-mini"}


def test_what_the_first_model_takes_goes_as_it_is() -> None:
    asked = req(temperature=0.7, seed=3, tool_choice=ToolChoice("required"), tools=(ToolSpec("f"),))
    fitted = fit(asked, chain("gemini-2.5-flash"), ParamPolicy())
    assert fitted.request is asked and fitted.dropped == () and fitted.left_out == ()


def test_lenient_leaves_out_each_field_and_keeps_the_rest() -> None:
    # Opus 4.1 asks for a schema through a forced tool call: no strict, and no strict tools; temperature 0 to 1.
    asked = req(
        temperature=1.5,
        response_format=ResponseFormat.json_schema("a", SCHEMA, strict=True),
        tools=(ToolSpec("f", strict=True),),
        tool_choice=ToolChoice("none"),
    )
    fitted = fit(asked, chain("claude-opus-4-1"), ParamPolicy(strict=False))
    assert unsupported(CATALOG.resolve("claude-opus-4-1"), fitted.request) == ()
    assert [d.param for d in fitted.dropped] == [
        "temperature",
        "response_format.json_schema.strict",
        "tools[0].function.strict",
    ]
    assert all(d.model == "claude-opus-4-1" and d.reason for d in fitted.dropped)
    r = fitted.request
    assert r.temperature is None and r.response_format == ResponseFormat.json_schema("a", SCHEMA)
    assert r.tools == (ToolSpec("f"),) and r.tool_choice == ToolChoice("none")


def test_lenient_with_thinking_on_leaves_out_what_thinking_excludes() -> None:
    asked = req(temperature=0.3, reasoning=Reasoning("low"), tool_choice=ToolChoice("required"), tools=(ToolSpec("f"),))
    fitted = fit(asked, chain("claude-sonnet-4-5"), ParamPolicy(strict=False))
    assert [d.param for d in fitted.dropped] == ["temperature", "tool_choice"]
    assert fitted.request.reasoning == Reasoning("low") and fitted.request.tool_choice is None


def test_a_fallback_that_cannot_take_the_request_is_left_out_by_name() -> None:
    asked = req(seed=7, parallel_tool_calls=False, tools=(ToolSpec("f"),))
    fitted = fit(asked, chain("gpt-5-mini", "claude-sonnet-4-5", "gemini-2.5-flash", "gpt-5"), ParamPolicy())
    assert [m.id for m in fitted.chain] == ["gpt-5-mini", "gpt-5"]
    assert fitted.left_out == (
        LeftOut("claude-sonnet-4-5", "anthropic", ("seed",)),
        LeftOut("gemini-2.5-flash", "gemini", ("parallel_tool_calls",)),
    )


def test_lenient_fits_the_fallbacks_to_the_request_the_first_model_gets() -> None:
    # temperature is left out for GPT-5, so Claude (which takes it) is not asked for it either, and stays.
    fitted = fit(req(temperature=0.3), chain("gpt-5-mini", "claude-sonnet-4-5"), ParamPolicy(strict=False))
    assert fitted.dropped == (DroppedParam("temperature", "gpt-5-mini", "takes only the default temperature (1)"),)
    assert [m.id for m in fitted.chain] == ["gpt-5-mini", "claude-sonnet-4-5"] and fitted.left_out == ()
