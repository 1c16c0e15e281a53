"""Every request field through each official SDK adapter against the emulators (which refuse what the real
API refuses): what each provider receives, and what comes back (structured output as JSON text, forced tool
calls, thinking kept out of the answer, logprobs only when asked, cache writes counted)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pydantic
import pytest

from providers import errors
from providers.anthropic import AnthropicProvider
from providers.base import (
    JSON_OBJECT,
    CacheControl,
    ChatRequest,
    Credential,
    Message,
    Provider,
    Reasoning,
    ResponseFormat,
    TextPart,
    ToolChoice,
    ToolSpec,
)
from providers.capabilities import for_model, unsupported
from providers.catalog import Catalog, spec_from_config
from providers.events import (
    Finish,
    LogprobsDelta,
    ProviderEvent,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from providers.gemini import GeminiProvider
from providers.openai import OpenAIProvider
from tests.emulators import Emulator, Script

pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")

KEY = Credential("sk-fields-0042")
ASK = ChatRequest((Message("system", "Be exact."), Message("user", "Describe the city as json.")), max_tokens=400)
WEATHER = ToolSpec(
    "get_weather",
    "Weather for a city",
    {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
        "additionalProperties": False,
    },
)
TIME = ToolSpec("get_time", "Local time", {"type": "object", "properties": {"zone": {"type": "string"}}})
# What each provider's flagship in the emulator is called (and what the catalog calls it).
MODELS = {"openai": "gpt-4.1-mini", "anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.5-flash"}


class City(pydantic.BaseModel):
    name: str
    population: int
    coastal: bool
    districts: list[str]


CITY = ResponseFormat.json_schema("city", {**City.model_json_schema(), "additionalProperties": False}, strict=True)


@pytest.fixture(scope="module")
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator() as e:
        yield e


@pytest.fixture(autouse=True)
def fresh(emu: Emulator) -> None:
    emu.reset()  # no script left over from another test


def make(name: str, emu: Emulator) -> Provider:
    if name == "openai":
        return OpenAIProvider("openai", emu.openai_base_url)
    if name == "anthropic":
        return AnthropicProvider(emu.anthropic_base_url)
    return GeminiProvider(emu.gemini_base_url)


async def collect(name: str, emu: Emulator, request: ChatRequest, model: str | None = None) -> list[ProviderEvent]:
    provider = make(name, emu)
    try:
        return [ev async for ev in provider.stream(request, model or MODELS[name], KEY)]
    finally:
        await provider.aclose()


def text(events: list[ProviderEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def gen_config(emu: Emulator) -> dict[str, Any]:
    return dict(emu.last.body.get("generationConfig", {}))


# -- sampling and identity ---------------------------------------------------------------------------------


async def test_openai_receives_every_sampling_field_and_the_end_user(emu: Emulator) -> None:
    req = replace(
        ASK,
        temperature=0.3,
        top_p=0.9,
        seed=11,
        presence_penalty=0.5,
        frequency_penalty=-0.2,
        stop=("END",),
        user="u-7",
    )
    assert await collect("openai", emu, req)
    body = emu.last.body
    assert (body["temperature"], body["top_p"], body["seed"]) == (0.3, 0.9, 11)
    assert (body["presence_penalty"], body["frequency_penalty"], body["stop"]) == (0.5, -0.2, ["END"])
    assert body["safety_identifier"] == "u-7" and "user" not in body and "metadata" not in body


async def test_a_compatible_server_gets_the_end_user_as_user(emu: Emulator) -> None:
    provider = OpenAIProvider("vllm", emu.openai_base_url, max_tokens_field="max_tokens")
    try:
        req = replace(ASK, user="u-8", metadata={"team": "search"}, presence_penalty=0.0)
        assert [ev async for ev in provider.stream(req, "llama-3.1-8b", KEY)]
    finally:
        await provider.aclose()
    body = emu.last.body
    assert body["user"] == "u-8" and body["max_tokens"] == 400
    assert "safety_identifier" not in body and "metadata" not in body and "presence_penalty" not in body


async def test_anthropic_receives_sampling_stop_sequences_and_the_end_user(emu: Emulator) -> None:
    assert await collect("anthropic", emu, replace(ASK, temperature=0.4, top_k=20, stop=("END", "STOP"), user="u-9"))
    body = emu.last.body
    assert (body["temperature"], body["top_k"], body["stop_sequences"]) == (0.4, 20, ["END", "STOP"])
    assert body["metadata"] == {"user_id": "u-9"}
    assert await collect("anthropic", emu, replace(ASK, top_p=0.8))
    assert emu.last.body["top_p"] == 0.8 and "temperature" not in emu.last.body


async def test_gemini_receives_every_sampling_field(emu: Emulator) -> None:
    req = replace(ASK, temperature=1.2, top_p=0.7, top_k=8, seed=5, stop=("END",), user="u-10")
    assert await collect("gemini", emu, req)
    assert gen_config(emu) == {
        "maxOutputTokens": 400,
        "temperature": 1.2,
        "topP": 0.7,
        "topK": 8,
        "seed": 5,
        "stopSequences": ["END"],
    }
    assert set(emu.last.body) == {"contents", "systemInstruction", "generationConfig"}  # no end-user field exists


@pytest.mark.parametrize(
    ("name", "fields", "missing"),
    [
        ("anthropic", {"seed": 1}, "seed"),
        ("anthropic", {"frequency_penalty": 0.5}, "frequency_penalty"),
        ("anthropic", {"logprobs": True}, "logprobs"),
        ("gemini", {"parallel_tool_calls": False, "tools": (WEATHER,)}, "parallel_tool_calls"),
        ("gemini", {"tools": (replace(WEATHER, strict=True),)}, "tools[0].strict"),
        ("openai", {"top_k": 3}, "top_k"),
        ("openai", {"reasoning": Reasoning(budget_tokens=2048)}, "thinking budget"),
    ],
)
async def test_a_field_a_provider_has_no_place_for_is_refused_by_name_before_sending(
    emu: Emulator, name: str, fields: dict[str, Any], missing: str
) -> None:
    before = len(emu.requests)
    with pytest.raises(errors.BadRequest, match=missing.replace("[", r"\[")):
        await collect(name, emu, replace(ASK, **fields))
    assert len(emu.requests) == before  # nothing went upstream


# -- tools ---------------------------------------------------------------------------------------------------

TOOL_CHOICES: list[tuple[str, ToolChoice, Any]] = [
    ("openai", ToolChoice("auto"), "auto"),
    ("openai", ToolChoice("none"), "none"),
    ("openai", ToolChoice("required"), "required"),
    ("openai", ToolChoice("function", "get_time"), {"type": "function", "function": {"name": "get_time"}}),
    ("anthropic", ToolChoice("auto"), {"type": "auto"}),
    ("anthropic", ToolChoice("none"), {"type": "none"}),
    ("anthropic", ToolChoice("required"), {"type": "any"}),
    ("anthropic", ToolChoice("function", "get_time"), {"type": "tool", "name": "get_time"}),
    ("gemini", ToolChoice("auto"), {"functionCallingConfig": {"mode": "AUTO"}}),
    ("gemini", ToolChoice("none"), {"functionCallingConfig": {"mode": "NONE"}}),
    ("gemini", ToolChoice("required"), {"functionCallingConfig": {"mode": "ANY"}}),
    (
        "gemini",
        ToolChoice("function", "get_time"),
        {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_time"]}},
    ),
]


@pytest.mark.parametrize(("name", "choice", "wire"), TOOL_CHOICES, ids=lambda v: getattr(v, "mode", None))
async def test_tool_choice_in_each_providers_form_and_forced_calls_come_back(
    emu: Emulator, name: str, choice: ToolChoice, wire: Any
) -> None:
    events = await collect(name, emu, replace(ASK, tools=(WEATHER, TIME), tool_choice=choice))
    body = emu.last.body
    sent = body["toolConfig"] if name == "gemini" else body["tool_choice"]
    assert sent == wire
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    if choice.forces_tool:
        # The emulator, like a model made to call a tool, calls it with arguments its schema accepts.
        expected = choice.name or "get_weather"
        assert calls and calls[0].name == expected and calls[0].id
        assert events[-1] == Finish("tool_calls") and text(events) == ""
    else:
        assert not calls and text(events) == "Hello world!"


@pytest.mark.parametrize(
    ("name", "choice", "wire"),
    [
        ("openai", None, None),
        ("anthropic", None, {"type": "auto", "disable_parallel_tool_use": True}),
        ("anthropic", ToolChoice("required"), {"type": "any", "disable_parallel_tool_use": True}),
        ("anthropic", ToolChoice("none"), {"type": "none"}),
    ],
)
async def test_parallel_tool_calls_off(emu: Emulator, name: str, choice: ToolChoice | None, wire: Any) -> None:
    assert await collect(name, emu, replace(ASK, tools=(WEATHER,), tool_choice=choice, parallel_tool_calls=False))
    body = emu.last.body
    if name == "openai":
        assert body["parallel_tool_calls"] is False and "tool_choice" not in body
    else:
        assert body["tool_choice"] == wire


async def test_strict_tools_reach_openai_and_anthropic(emu: Emulator) -> None:
    strict = replace(ASK, tools=(replace(WEATHER, strict=True),))
    assert await collect("openai", emu, strict)
    assert emu.last.body["tools"][0]["function"]["strict"] is True
    assert await collect("anthropic", emu, strict)
    assert emu.last.body["tools"][0]["strict"] is True


# -- structured output ---------------------------------------------------------------------------------------


def _structured_wire(name: str, body: dict[str, Any]) -> None:
    if name == "openai":
        assert body["response_format"]["type"] == "json_schema"
        assert body["response_format"]["json_schema"]["name"] == "city"
        assert body["response_format"]["json_schema"]["strict"] is True
    elif name == "anthropic":
        fmt = body["output_config"]["format"]
        assert fmt["type"] == "json_schema" and fmt["schema"]["additionalProperties"] is False
        assert set(fmt["schema"]["required"]) == {"name", "population", "coastal", "districts"}
        assert "tools" not in body and "tool_choice" not in body
    else:
        config = body["generationConfig"]
        assert config["responseMimeType"] == "application/json"
        assert config["responseJsonSchema"]["properties"].keys() == City.model_fields.keys()


@pytest.mark.parametrize("name", ["openai", "anthropic", "gemini"])
async def test_a_schema_streams_back_as_json_text_that_parses(emu: Emulator, name: str) -> None:
    events = await collect(name, emu, replace(ASK, response_format=CITY))
    _structured_wire(name, emu.last.body)
    city = City.model_validate_json(text(events))  # what the OpenAI SDK's parse() does with the content
    assert city.districts and isinstance(city.population, int)
    assert not [e for e in events if isinstance(e, ToolCallDelta)]
    assert events[-1] == Finish("stop")
    assert len([e for e in events if isinstance(e, TextDelta)]) > 3  # streamed in pieces, not at the end


async def test_a_model_without_native_structured_output_answers_through_a_forced_tool_as_text(emu: Emulator) -> None:
    opus = Catalog.build().resolve("claude-opus-4-1")
    loose = replace(CITY, strict=False)
    assert unsupported(opus, replace(ASK, response_format=CITY))[0].field == "response_format.json_schema.strict"
    req = for_model(opus, replace(ASK, response_format=loose))
    events = await collect("anthropic", emu, req, "claude-opus-4-1")
    body = emu.last.body
    assert "output_config" not in body
    assert body["tools"] == [
        {
            "name": "city",
            "description": "Give the answer as this tool's input: JSON matching its schema.",
            "input_schema": loose.schema,
        }
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "city", "disable_parallel_tool_use": True}
    City.model_validate_json(text(events))
    assert not [e for e in events if isinstance(e, ToolCallDelta)]
    assert events[-1] == Finish("stop")  # the forced call's tool_use stop is the answer's end


TOOL_ONLY = {"json_schema": "tool", "json_object": "tool"}


@pytest.mark.parametrize(("name", "model"), [("openai", "llama-3.1-70b"), ("gemini", "gemini-2.0-flash-lite")])
async def test_a_model_configured_without_native_structured_output_answers_through_a_forced_call(
    emu: Emulator, name: str, model: str
) -> None:
    spec = spec_from_config({"id": model, "provider": name, "capabilities": TOOL_ONLY})
    loose = replace(CITY, strict=False)
    req = for_model(spec, replace(ASK, response_format=loose))
    assert unsupported(spec, req) == ()
    events = await collect(name, emu, req, model)
    body = emu.last.body
    if name == "openai":
        assert "response_format" not in body
        assert body["tools"][-1]["function"]["name"] == "city"
        assert body["tools"][-1]["function"]["parameters"] == loose.schema
        assert body["tool_choice"] == {"type": "function", "function": {"name": "city"}}
    else:
        assert "responseMimeType" not in gen_config(emu)
        assert body["tools"][0]["functionDeclarations"][-1]["parametersJsonSchema"] == loose.schema
        assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["city"]}}
    City.model_validate_json(text(events))
    assert not [e for e in events if isinstance(e, ToolCallDelta)]
    assert events[-1] == Finish("stop")
    json_mode = await collect(name, emu, for_model(spec, replace(ASK, response_format=JSON_OBJECT)), model)
    assert isinstance(pydantic.TypeAdapter(dict[str, Any]).validate_json(text(json_mode)), dict)


async def test_a_forced_answer_call_beside_the_callers_own_tools_keeps_them_apart(emu: Emulator) -> None:
    # The capability check refuses this mix for tool-only models; an adapter still keeps the streams apart.
    spec = spec_from_config({"id": "llama-3.1-70b", "provider": "openai", "capabilities": TOOL_ONLY})
    req = for_model(spec, replace(ASK, response_format=replace(CITY, strict=False), tools=(TIME,)))
    assert [u.reason for u in unsupported(spec, req)] == ["cannot combine a JSON schema with tools"]
    events = await collect("openai", emu, req, "llama-3.1-70b")
    assert [t["function"]["name"] for t in emu.last.body["tools"]] == ["get_time", "city"]
    City.model_validate_json(text(events))


@pytest.mark.parametrize("name", ["openai", "anthropic", "gemini"])
async def test_json_mode_streams_a_json_object(emu: Emulator, name: str) -> None:
    spec = Catalog.build().resolve(MODELS[name] if name != "openai" else "gpt-5-mini")
    req = for_model(spec, replace(ASK, response_format=JSON_OBJECT))
    emu.script(Script(json={"city": "Lyon", "rivers": 2}))
    events = await collect(name, emu, req)
    body = emu.last.body
    if name == "openai":
        assert body["response_format"] == {"type": "json_object"}
    elif name == "anthropic":
        # Anthropic has no JSON mode: a forced call of a tool that takes any object.
        assert body["tools"][0]["input_schema"] == {"type": "object"}
        assert body["tool_choice"]["type"] == "tool"
    else:
        assert gen_config(emu)["responseMimeType"] == "application/json" and "responseJsonSchema" not in gen_config(emu)
    assert pydantic.TypeAdapter(dict[str, Any]).validate_json(text(events)) == {"city": "Lyon", "rivers": 2}


async def test_a_structured_answer_cut_mid_stream_keeps_what_came(emu: Emulator) -> None:
    emu.script(Script(drop_after=3))
    got: list[ProviderEvent] = []
    with pytest.raises(errors.ConnectionLost):
        async for ev in make("gemini", emu).stream(replace(ASK, response_format=CITY), MODELS["gemini"], KEY):
            got.append(ev)
    assert len(text(got)) == 18 and text(got).startswith('{"name"')  # three 6-character pieces of JSON


# -- reasoning -----------------------------------------------------------------------------------------------


async def test_openai_reasoning_effort(emu: Emulator) -> None:
    assert await collect("openai", emu, replace(ASK, reasoning=Reasoning("minimal")), "gpt-5-mini")
    assert emu.last.body["reasoning_effort"] == "minimal"


@pytest.mark.parametrize(
    ("reasoning", "max_tokens", "thinking", "sent_max"),
    [
        (Reasoning("low"), None, {"type": "enabled", "budget_tokens": 4096}, 4096 + 8192),  # room added on top
        (Reasoning("high"), 40_000, {"type": "enabled", "budget_tokens": 16384}, 40_000),
        (Reasoning("high"), 5000, {"type": "enabled", "budget_tokens": 4999}, 5000),  # kept under max_tokens
        (Reasoning(budget_tokens=3000), 6000, {"type": "enabled", "budget_tokens": 3000}, 6000),
        (Reasoning("none"), 500, {"type": "disabled"}, 500),
    ],
)
async def test_anthropic_thinking_from_effort_or_budget(
    emu: Emulator, reasoning: Reasoning, max_tokens: int | None, thinking: dict[str, Any], sent_max: int
) -> None:
    assert await collect("anthropic", emu, replace(ASK, reasoning=reasoning, max_tokens=max_tokens))
    assert emu.last.body["thinking"] == thinking and emu.last.body["max_tokens"] == sent_max


@pytest.mark.parametrize(
    ("model", "reasoning", "budget"),
    [
        ("gemini-2.5-flash", Reasoning("none"), 0),
        ("gemini-2.5-flash", Reasoning("high"), 24_576),
        ("gemini-2.5-pro", Reasoning("minimal"), 512),
        ("gemini-2.5-pro", Reasoning(budget_tokens=2000), 2000),
    ],
)
async def test_gemini_thinking_budget(emu: Emulator, model: str, reasoning: Reasoning, budget: int) -> None:
    assert await collect("gemini", emu, replace(ASK, reasoning=reasoning), model)
    assert gen_config(emu)["thinkingConfig"] == {"thinkingBudget": budget}


async def test_gemini_pro_cannot_stop_thinking_and_says_so(emu: Emulator) -> None:
    spec = Catalog.build().resolve("gemini-2.5-pro")
    req = replace(ASK, reasoning=Reasoning("none"))
    assert [u.field for u in unsupported(spec, req)] == ["reasoning_effort"]
    with pytest.raises(errors.BadRequest, match="only works in thinking mode"):
        await collect("gemini", emu, req, "gemini-2.5-pro")


@pytest.mark.parametrize("name", ["anthropic", "gemini"])
async def test_thinking_is_its_own_event_and_never_answer_text(emu: Emulator, name: str) -> None:
    emu.script(Script(text=("Paris",), thinking=("The capital ", "is Paris.")))
    events = await collect(name, emu, replace(ASK, reasoning=Reasoning("low"), max_tokens=None))
    assert text(events) == "Paris"
    assert "".join(e.text for e in events if isinstance(e, ReasoningDelta)) == "The capital is Paris."


# -- logprobs ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "model"), [("openai", "gpt-4.1-mini"), ("gemini", "gemini-2.0-flash")])
async def test_logprobs_come_back_only_when_asked(emu: Emulator, name: str, model: str) -> None:
    events = await collect(name, emu, replace(ASK, logprobs=True, top_logprobs=2), model)
    body = emu.last.body
    if name == "openai":
        assert (body["logprobs"], body["top_logprobs"]) == (True, 2)
    else:
        assert (gen_config(emu)["responseLogprobs"], gen_config(emu)["logprobs"]) == (True, 2)
    deltas = [e for e in events if isinstance(e, LogprobsDelta)]
    tokens = [t for d in deltas for t in d.tokens]
    assert [t.token for t in tokens] == ["Hello", " world", "!"]
    assert all(t.logprob < 0 and len(t.top) == 2 and t.top[0].token == t.token for t in tokens)
    plain = await collect(name, emu, ASK, model)
    assert not [e for e in plain if isinstance(e, LogprobsDelta)]
    assert "logprobs" not in emu.last.body and "responseLogprobs" not in gen_config(emu)


# -- prompt caching ------------------------------------------------------------------------------------------

HOUR = CacheControl(ttl="1h")
CACHED = ChatRequest(
    (
        Message("system", (TextPart("Long policy text.", HOUR), TextPart("Today's notes."))),
        Message("user", "First question", cache_control=CacheControl()),
        Message("assistant", "First answer"),
        Message("user", "Second question"),
    ),
    tools=(replace(WEATHER, cache_control=CacheControl()),),
)


async def test_cache_markers_reach_anthropic_unchanged_and_writes_are_counted(emu: Emulator) -> None:
    emu.script(Script(input_tokens=5000, cached_tokens=3000, cache_creation_tokens=1500))
    events = await collect("anthropic", emu, CACHED)
    body = emu.last.body
    assert body["system"] == [
        {"type": "text", "text": "Long policy text.", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
        {"type": "text", "text": "Today's notes."},
    ]
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "First question", "cache_control": {"type": "ephemeral"}}
    ]
    assert body["tools"][0]["cache_control"] == {"type": "ephemeral"}
    (usage,) = [e for e in events if isinstance(e, Usage)]
    assert usage == Usage(5000, 3, 3000, 0, 1500)


@pytest.mark.parametrize("name", ["openai", "gemini"])
async def test_other_providers_cache_on_their_own_and_get_no_markers(emu: Emulator, name: str) -> None:
    assert await collect(name, emu, CACHED)
    assert "cache_control" not in str(emu.last.body)


async def test_more_than_four_cache_markers_get_anthropics_own_refusal(emu: Emulator) -> None:
    many = ChatRequest(tuple(Message("user", f"part {i}", cache_control=CacheControl()) for i in range(5)))
    with pytest.raises(errors.BadRequest, match="maximum of 4 blocks with cache_control"):
        await collect("anthropic", emu, many)


# -- the capability table agrees with what each API takes ------------------------------------------------------

REQUESTS: list[dict[str, Any]] = [
    {"temperature": 0.5},
    {"temperature": 1.0, "top_p": 1.0},
    {"top_p": 0.5},
    {"top_k": 10},
    {"seed": 3},
    {"presence_penalty": 0.4, "frequency_penalty": 0.2},
    {"stop": ("END",)},
    {"stop": tuple("abcdef")},
    {"response_format": CITY},
    {"response_format": replace(CITY, strict=False)},
    {"response_format": JSON_OBJECT},
    {"tools": (WEATHER, TIME), "tool_choice": ToolChoice("function", "get_time")},
    {"tools": (WEATHER,), "tool_choice": ToolChoice("required"), "parallel_tool_calls": False},
    {"tools": (replace(WEATHER, strict=True),)},
    {"logprobs": True, "top_logprobs": 3},
    {"reasoning": Reasoning("low")},
    {"reasoning": Reasoning("none")},
    {"reasoning": Reasoning("minimal"), "temperature": 0.5},
    {"reasoning": Reasoning("medium"), "tools": (WEATHER,), "tool_choice": ToolChoice("required")},
    {"reasoning": Reasoning(budget_tokens=2048)},
    {"user": "someone", "metadata": {"k": "v"}},
]
CATALOG_MODELS = ["gpt-5-mini", "gpt-5", "claude-sonnet-4-5", "claude-opus-4-1", "gemini-2.5-flash", "gemini-2.5-pro"]


@pytest.mark.parametrize("model", [*CATALOG_MODELS, "gpt-4.1-mini"])
async def test_what_the_capability_check_lets_through_every_api_accepts(emu: Emulator, model: str) -> None:
    """Nothing a model is said to honour is refused upstream, for each field alone and in combination."""
    cat = Catalog.build()
    spec = cat.resolve(model) if model in cat.models else spec_from_config({"id": model, "provider": "openai"})
    name = spec.provider
    honoured = 0
    for fields in REQUESTS:
        req = for_model(spec, replace(ASK, **fields))
        if unsupported(spec, req):
            continue
        honoured += 1
        try:
            events = await collect(name, emu, req, spec.upstream)
        except errors.ProviderError as exc:
            raise AssertionError(f"{model} was said to honour {fields} but: {exc}") from exc
        assert isinstance(events[-1], Finish), fields
    assert honoured >= 6
