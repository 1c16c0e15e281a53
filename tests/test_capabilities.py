"""What each catalog model can honour: `unsupported(spec, request)` as a table, and its configuration."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from gateway.wiring import build_catalog
from providers.base import JSON_OBJECT, ChatRequest, Message, Reasoning, ResponseFormat, ToolChoice, ToolSpec
from providers.capabilities import (
    COMPATIBLE,
    MESSAGES_FIELDS,
    OPENAI_CHAT,
    RESPONSES_FIELDS,
    accepts_prefill,
    can_take_over,
    capabilities_of,
    for_model,
    unsupported,
)
from providers.capability_config import capabilities_from_config
from providers.catalog import Catalog, ModelSpec, spec_from_config
from tests.conftest import make_settings

BASE = ChatRequest((Message("user", "hi"),))
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": False}
STRICT = ResponseFormat.json_schema("answer", SCHEMA, strict=True)
LOOSE = ResponseFormat.json_schema("answer", SCHEMA)
TOOL = ToolSpec("lookup", "Look it up", {"type": "object", "properties": {}})
THINK = Reasoning("medium")


def req(**kw: Any) -> ChatRequest:
    return replace(BASE, **kw)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.build()


# (model, request fields, what is refused as (field, words in the reason)); an empty tuple: all honoured.
TABLE: list[tuple[str, dict[str, Any], tuple[tuple[str, str], ...]]] = [
    # GPT-5: reasoning, only the default temperature and top_p, no penalties, logprobs or stop.
    ("gpt-5-mini", {"temperature": 1.0, "top_p": 1.0, "seed": 7}, ()),
    ("gpt-5-mini", {"temperature": 0.2}, (("temperature", "only the default temperature (1)"),)),
    ("gpt-5", {"top_p": 0.5}, (("top_p", "only the default top_p"),)),
    ("gpt-5-mini", {"presence_penalty": 0.5, "frequency_penalty": 0.0}, (("presence_penalty", "no presence"),)),
    ("gpt-5-mini", {"logprobs": True, "top_logprobs": 3}, (("logprobs", "no log probabilities"),)),
    ("gpt-5-mini", {"stop": ("END",)}, (("stop", "no stop sequences"),)),
    ("gpt-5-mini", {"top_k": 5}, (("top_k", "no top_k"),)),
    ("gpt-5-mini", {"response_format": STRICT, "tools": (TOOL,), "tool_choice": ToolChoice("required")}, ()),
    ("gpt-5-mini", {"parallel_tool_calls": False, "tools": (TOOL,), "reasoning": Reasoning("minimal")}, ()),
    ("gpt-5-mini", {"reasoning": Reasoning("xhigh")}, (("reasoning_effort", "minimal, low, medium, high"),)),
    ("gpt-5", {"reasoning": Reasoning(budget_tokens=2048)}, (("reasoning_effort", "no thinking budget"),)),
    ("gpt-5-mini", {"response_format": JSON_OBJECT}, ()),
    # Claude: temperature 0..1, not with top_p; thinking fixes sampling and forbids a forced tool call.
    ("claude-sonnet-4-5", {"temperature": 0.7, "top_k": 40, "stop": ("a", "b", "c", "d", "e")}, ()),
    ("claude-sonnet-4-5", {"temperature": 1.5}, (("temperature", "from 0 to 1"),)),
    ("claude-sonnet-4-5", {"temperature": 0.5, "top_p": 0.9}, (("top_p", "temperature or top_p, not both"),)),
    ("claude-opus-4-1", {"seed": 1}, (("seed", "no seed"),)),
    ("claude-opus-4-1", {"frequency_penalty": 1.0}, (("frequency_penalty", "no frequency"),)),
    ("claude-sonnet-4-5", {"logprobs": True}, (("logprobs", "no log probabilities"),)),
    (
        "claude-sonnet-4-5",
        {"response_format": STRICT, "tools": (TOOL,), "tool_choice": ToolChoice("function", "lookup")},
        (),
    ),
    ("claude-sonnet-4-5", {"response_format": JSON_OBJECT}, ()),
    (
        "claude-sonnet-4-5",
        {"response_format": JSON_OBJECT, "tools": (TOOL,)},
        (("response_format", "JSON mode with tools"),),
    ),
    ("claude-sonnet-4-5", {"reasoning": THINK, "temperature": 0.3}, (("temperature", "while reasoning is on"),)),
    ("claude-sonnet-4-5", {"reasoning": THINK, "top_p": 0.97, "temperature": 1.0}, (("top_p", "not both"),)),
    ("claude-sonnet-4-5", {"reasoning": THINK, "top_p": 0.5}, (("top_p", "from 0.95 to 1 while reasoning"),)),
    ("claude-sonnet-4-5", {"reasoning": THINK, "top_k": 5}, (("top_k", "while reasoning is on"),)),
    (
        "claude-sonnet-4-5",
        {"reasoning": THINK, "tools": (TOOL,), "tool_choice": ToolChoice("required")},
        (("tool_choice", "cannot be forced to call a tool while reasoning"),),
    ),
    ("claude-sonnet-4-5", {"reasoning": THINK, "tools": (TOOL,), "tool_choice": ToolChoice("auto")}, ()),
    ("claude-sonnet-4-5", {"reasoning": THINK, "response_format": STRICT}, ()),  # native format, not a tool
    ("claude-sonnet-4-5", {"reasoning": Reasoning("none"), "tool_choice": ToolChoice("required")}, ()),
    ("claude-sonnet-4-5", {"reasoning": Reasoning(budget_tokens=512)}, (("reasoning_effort", "1024 to 63999"),)),
    ("claude-opus-4-1", {"reasoning": Reasoning(budget_tokens=40_000)}, (("reasoning_effort", "1024 to 31999"),)),
    (
        "claude-sonnet-4-5",
        {"reasoning": Reasoning(budget_tokens=4096), "max_tokens": 4096},
        (("reasoning_effort", "below max_tokens"),),
    ),
    ("claude-sonnet-4-5", {"reasoning": Reasoning("low"), "max_tokens": 1000}, (("reasoning_effort", "above 1024"),)),
    ("claude-sonnet-4-5", {"reasoning": Reasoning("xhigh")}, (("reasoning_effort", "none, minimal, low"),)),
    ("claude-sonnet-4-5", {"tools": (replace(TOOL, strict=True),), "parallel_tool_calls": False}, ()),
    # Gemini 2.5: no penalties, logprobs, strict tools or switch for parallel calls; at most 5 stop sequences.
    ("gemini-2.5-flash", {"temperature": 1.9, "top_p": 0.5, "top_k": 3, "seed": 4, "reasoning": Reasoning("none")}, ()),
    (
        "gemini-2.5-flash",
        {"response_format": STRICT, "tools": (TOOL,), "tool_choice": ToolChoice("function", "lookup")},
        (),
    ),
    ("gemini-2.5-flash", {"presence_penalty": 0.1}, (("presence_penalty", "no presence"),)),
    ("gemini-2.5-flash", {"stop": tuple("abcdef")}, (("stop", "at most 5 stop sequences"),)),
    ("gemini-2.5-flash", {"parallel_tool_calls": False, "tools": (TOOL,)}, (("parallel_tool_calls", "cannot turn"),)),
    ("gemini-2.5-flash", {"parallel_tool_calls": True, "tools": (TOOL,)}, ()),
    (
        "gemini-2.5-flash",
        {"tools": (TOOL, replace(TOOL, name="b", strict=True))},
        (("tools[1].function.strict", "match"),),
    ),
    ("gemini-2.5-flash", {"reasoning": Reasoning(budget_tokens=30_000)}, (("reasoning_effort", "0 to 24576"),)),
    ("gemini-2.5-pro", {"reasoning": Reasoning("none")}, (("reasoning_effort", "minimal, low, medium, high"),)),
    ("gemini-2.5-pro", {"reasoning": Reasoning(budget_tokens=128)}, ()),
    ("gemini-2.5-pro", {"logprobs": True}, (("logprobs", "no log probabilities"),)),
    # The mock writes a fixed text: sampling is moot, structure it cannot give.
    ("mock", {"temperature": 0.1, "seed": 3, "stop": ("x",)}, ()),
    ("mock", {"response_format": LOOSE}, (("response_format", "no structured output"),)),
    ("mock", {"tool_choice": ToolChoice("required"), "tools": (TOOL,)}, (("tool_choice", "auto only"),)),
    ("mock", {"reasoning": THINK}, (("reasoning_effort", "no reasoning effort"),)),
]


@pytest.mark.parametrize(("model", "fields", "expected"), TABLE)
def test_what_each_model_refuses(
    catalog: Catalog, model: str, fields: dict[str, Any], expected: tuple[tuple[str, str], ...]
) -> None:
    got = unsupported(catalog.resolve(model), req(**fields))
    assert [u.field for u in got] == [f for f, _ in expected], got
    for u, (_, words) in zip(got, expected, strict=True):
        assert words in u.reason, (u.reason, words)


def test_several_fields_are_named_at_once_in_a_stable_order(catalog: Catalog) -> None:
    r = req(temperature=0.1, top_p=0.2, seed=1, logprobs=True, response_format=LOOSE, tools=(TOOL,))
    got = unsupported(catalog.resolve("gpt-5-mini"), r)
    assert [u.field for u in got] == ["temperature", "top_p", "logprobs"]
    assert [u.kind for u in got] == ["sampling", "sampling", "shape"]


def test_a_model_without_native_structured_output_asks_through_a_forced_tool() -> None:
    spec = spec_from_config(
        {"id": "old-claude", "provider": "anthropic", "capabilities": {"json_schema": "tool", "strict_tools": False}}
    )
    assert unsupported(spec, req(response_format=LOOSE)) == ()
    refused = unsupported(spec, req(response_format=STRICT))
    assert [u.field for u in refused] == ["response_format.json_schema.strict"]
    assert "strict false" in refused[0].reason and refused[0].kind == "shape"
    array = ResponseFormat.json_schema("list", {"type": "array", "items": {"type": "string"}})
    assert [u.reason for u in unsupported(spec, req(response_format=array))] == [
        "takes only a schema whose root is an object"
    ]
    with_tools = unsupported(spec, req(response_format=LOOSE, tools=(TOOL,)))
    assert [u.reason for u in with_tools] == ["cannot combine a JSON schema with tools"]
    assert unsupported(spec, req(response_format=LOOSE, tools=(TOOL,), tool_choice=ToolChoice("none"))) == ()
    thinking = unsupported(spec, req(response_format=LOOSE, reasoning=THINK))
    assert [u.reason for u in thinking] == ["cannot combine a JSON schema with reasoning"]
    # for_model marks the request so the adapter asks for a tool call; a native model's request is untouched.
    sent = for_model(spec, req(response_format=LOOSE))
    assert sent.response_format is not None and sent.response_format.via_tool
    native = Catalog.build().resolve("claude-sonnet-4-5")
    plain = req(response_format=LOOSE)
    assert for_model(native, plain) is plain
    assert for_model(spec, BASE) is BASE
    # JSON mode on Claude has no native form: it is always a tool call.
    json_mode = for_model(native, req(response_format=JSON_OBJECT))
    assert json_mode.response_format is not None and json_mode.response_format.via_tool


def test_faces_name_fields_their_own_way(catalog: Catalog) -> None:
    (budget,) = unsupported(catalog.resolve("gpt-5"), req(reasoning=Reasoning(budget_tokens=2048)))
    assert budget.field_in(MESSAGES_FIELDS) == "thinking.budget_tokens"
    (fmt,) = unsupported(catalog.resolve("mock"), req(response_format=LOOSE))
    assert fmt.field_in(RESPONSES_FIELDS) == "text.format"
    assert fmt.field_in(MESSAGES_FIELDS) == "output_config.format"
    (stop,) = unsupported(catalog.resolve("gpt-5"), req(stop=("x",)))
    assert (stop.field, stop.field_in(MESSAGES_FIELDS)) == ("stop", "stop_sequences")


def test_configured_models_get_their_family_defaults_and_overrides(tmp_path: object) -> None:
    models = [
        {"id": "gpt-4.1-mini", "provider": "openai"},
        {"id": "o4-mini", "provider": "openai"},
        {"id": "gpt-5-chat", "provider": "openai", "upstream": "gpt-5-chat-latest"},
        # The same id, another model behind it: the old one's limits do not stick.
        {"id": "gpt-5-mini", "upstream": "gpt-4.1-mini"},
        {"id": "claude-opus-4-1", "capabilities": {"seed": True, "temperature": None}},
        {"id": "strict-server", "provider": "vllm", "capabilities": {"json_schema": "none", "tool_choice": ["auto"]}},
    ]
    cat = build_catalog(make_settings(tmp_path, gateway_models=json.dumps(models)))  # type: ignore[arg-type]
    assert capabilities_of(cat.resolve("gpt-4.1-mini")) == OPENAI_CHAT
    assert unsupported(cat.resolve("o4-mini"), req(temperature=0.5))[0].field == "temperature"
    assert unsupported(cat.resolve("gpt-5-chat"), req(temperature=0.5)) == ()
    assert unsupported(cat.resolve("gpt-5-mini"), req(temperature=0.5, logprobs=True)) == ()
    opus = cat.resolve("claude-opus-4-1")
    assert unsupported(opus, req(seed=5)) == ()
    assert [u.reason for u in unsupported(opus, req(temperature=0.5))] == ["takes no temperature"]
    assert capabilities_of(opus).thinking_budget == (1024, 31_999)  # the rest stays
    server = cat.resolve("strict-server")
    assert capabilities_of(server).max_stop == COMPATIBLE.max_stop
    assert [u.field for u in unsupported(server, req(response_format=LOOSE, tool_choice=ToolChoice("none")))] == [
        "response_format",
        "tool_choice",
    ]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"sed": True}, "unknown model capabilities"),
        ({"json_schema": "sometimes"}, "takes native, tool, none"),
        ({"seed": "yes"}, "true or false"),
        ({"temperature": [2, 1]}, "low is above high"),
        ({"temperature": 1}, "[low, high] or null"),
        ({"logprobs": -1}, "a count or null"),
        ({"reasoning_efforts": ["max"]}, "reasoning_efforts"),
        ({"tool_choice": ["any"]}, "tool_choice"),
    ],
)
def test_bad_capability_configuration_is_an_error(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        capabilities_from_config(raw, OPENAI_CHAT)
    with pytest.raises(ValueError):
        spec_from_config({"id": "x", "provider": "openai", "capabilities": raw})


def test_capabilities_must_be_an_object() -> None:
    with pytest.raises(ValueError, match="must be an object"):
        spec_from_config({"id": "x", "provider": "openai", "capabilities": ["seed"]})
    assert ModelSpec("x", "openai", "x").capabilities is None


def test_a_continuation_with_thinking_on_is_no_prefill_for_claude(catalog: Catalog) -> None:
    claude = catalog.resolve("claude-sonnet-4-5")
    assert accepts_prefill(claude, BASE) and accepts_prefill(claude, req(reasoning=Reasoning("none")))
    assert not accepts_prefill(claude, req(reasoning=THINK))
    assert not accepts_prefill(catalog.resolve("gpt-5-mini"), BASE)  # no prefill at all
    assert accepts_prefill(catalog.resolve("mock"), req(reasoning=THINK))


async def test_the_mock_model_refuses_by_name_what_it_cannot_honour() -> None:
    from providers import errors
    from providers.base import Credential
    from providers.mock import MockProvider

    mock = MockProvider(default_tokens=3)
    with pytest.raises(errors.BadRequest, match="cannot honour logprobs, response_format"):
        async for _ in mock.stream(req(response_format=LOOSE, logprobs=True), "mock", Credential("")):
            pass
    words = [ev async for ev in mock.stream(req(temperature=0.2, seed=4), "mock", Credential(""))]
    assert len(words) == 5  # three words, usage, finish: sampling is moot for a fixed text


def test_a_fallback_is_taken_only_if_it_gives_the_same_kind_of_answer(catalog: Catalog) -> None:
    strict = req(response_format=STRICT, temperature=0.3)
    # GPT-5 cannot take the temperature (the face reports that) but gives the same JSON: it may take over.
    assert can_take_over(catalog.resolve("gpt-5-mini"), strict)
    assert can_take_over(catalog.resolve("gemini-2.5-flash"), strict)
    # Opus 4.1 cannot guarantee the schema, the mock has no structured output: not taken.
    assert not can_take_over(catalog.resolve("claude-opus-4-1"), strict)
    assert not can_take_over(catalog.resolve("mock"), strict)
    forced = req(tools=(TOOL,), tool_choice=ToolChoice("required"), reasoning=THINK)
    assert can_take_over(catalog.resolve("gpt-5"), forced) and not can_take_over(
        catalog.resolve("claude-sonnet-4-5"), forced
    )
