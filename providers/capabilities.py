"""What each model can honour of a request, and one pure check that names what it cannot.

Adapters send whatever a request holds. Before a stream starts, `unsupported(spec, request)` names each
field the model cannot take and why, so the face refuses it (or reports it) and the router skips a fallback
model that would change the answer's shape. `for_model` picks how a model is asked for structured output.

Defaults follow the providers' documentation: reasoning models (GPT-5, o-series) take only the default
temperature and top_p, no penalties, logprobs or stop sequences; Claude takes temperature from 0 to 1, top_k,
not temperature and top_p together, and with thinking on no sampling changes and no forced tool call; Gemini
2.5 has no penalties, logprobs or switch for parallel calls. The `mock` model writes a fixed text whatever
the sampling asks, and has no structured output. Operators adjust any of it per model in `GATEWAY_MODELS`
(`"capabilities": {...}`, read by `providers/capability_config.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal, get_args

from providers.base import ChatRequest, ReasoningEffort, ToolChoiceMode

if TYPE_CHECKING:
    from providers.catalog import ModelSpec

StructuredMode = Literal["native", "tool", "none"]  # native output format, a forced tool call, or not at all
Kind = Literal["shape", "sampling"]  # shape: what the answer is made of; sampling: how it is drawn
Param = Literal[
    "temperature",
    "top_p",
    "top_k",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "stop",
    "response_format",
    "response_format.strict",
    "tool_choice",
    "parallel_tool_calls",
    "tools.strict",
    "logprobs",
    "top_logprobs",
    "reasoning_effort",
    "reasoning_budget",
    "betas",
]

ALL_TOOL_CHOICES: frozenset[ToolChoiceMode] = frozenset(get_args(ToolChoiceMode))
ALL_EFFORTS: frozenset[ReasoningEffort] = frozenset(get_args(ReasoningEffort))
_THINKING_EFFORTS: frozenset[ReasoningEffort] = frozenset({"minimal", "low", "medium", "high"})
# With thinking on, Claude takes top_p from this value up to 1 (and no other sampling change).
_REASONING_TOP_P_MIN = 0.95

# A fallback model that cannot honour these would hand the client a different kind of answer.
_SHAPE: frozenset[Param] = frozenset(
    {
        "stop",
        "response_format",
        "response_format.strict",
        "tool_choice",
        "parallel_tool_calls",
        "tools.strict",
        "logprobs",
        "top_logprobs",
        "betas",  # a beta feature may change anything about the answer
    }
)

# How each face names a parameter (`{}` takes a tool's index). A face missing from a table uses the key.
CHAT_FIELDS: dict[Param, str] = {
    "response_format.strict": "response_format.json_schema.strict",
    "tools.strict": "tools[{}].function.strict",
    "reasoning_budget": "reasoning_effort",
}
RESPONSES_FIELDS: dict[Param, str] = {
    "response_format": "text.format",
    "response_format.strict": "text.format.strict",
    "tools.strict": "tools[{}].strict",
    "reasoning_effort": "reasoning.effort",
    "reasoning_budget": "reasoning.effort",
    "logprobs": "include",
}
MESSAGES_FIELDS: dict[Param, str] = {
    "stop": "stop_sequences",
    "response_format": "output_config.format",
    "response_format.strict": "output_config.format",
    "parallel_tool_calls": "tool_choice.disable_parallel_tool_use",
    "tools.strict": "tools[{}].strict",
    "reasoning_effort": "output_config.effort",
    "reasoning_budget": "thinking.budget_tokens",
    "betas": "anthropic-beta",
}


@dataclass(slots=True, frozen=True)
class Unsupported:
    """One field a model cannot honour, and why (in words a client can act on)."""

    param: Param
    reason: str
    index: int | None = None  # which tool, for per-tool fields

    @property
    def kind(self) -> Kind:
        return "shape" if self.param in _SHAPE else "sampling"

    @property
    def field(self) -> str:
        """The field as a Chat Completions client names it."""
        return self.field_in(CHAT_FIELDS)

    def field_in(self, names: Mapping[Param, str]) -> str:
        name = names.get(self.param, self.param)
        return name.format(self.index) if "{}" in name else name


@dataclass(slots=True, frozen=True)
class Capabilities:
    """What one model takes. A range is (lowest, highest); `None` where a range goes means "not at all"."""

    json_schema: StructuredMode = "native"
    json_object: StructuredMode = "native"
    strict_tools: bool = True
    tool_choice: frozenset[ToolChoiceMode] = ALL_TOOL_CHOICES
    parallel_tool_calls: bool = True  # parallel calls can be turned off
    temperature: tuple[float, float] | None = (0.0, 2.0)
    top_p: tuple[float, float] | None = (0.0, 1.0)
    top_k: bool = False
    temperature_with_top_p: bool = True
    seed: bool = True
    penalties: bool = True
    max_stop: int | None = 4  # how many stop sequences; None: no limit, 0: none at all
    logprobs: int | None = 20  # the most `top_logprobs`; None: no logprobs
    reasoning_efforts: frozenset[ReasoningEffort] = frozenset()
    thinking_budget: tuple[int, int] | None = None  # tokens, for an explicit budget
    budget_below_max_tokens: bool = False  # thinking counts inside max_tokens and must leave room
    sampling_with_reasoning: bool = True
    forced_tool_with_reasoning: bool = True
    betas: bool = False  # takes Anthropic beta features (`anthropic-beta`)
    prefill_with_reasoning: bool = True  # a continuation may end in an assistant turn while thinking is on


OPENAI_CHAT = Capabilities()
OPENAI_REASONING = Capabilities(
    temperature=(1.0, 1.0),
    top_p=(1.0, 1.0),
    penalties=False,
    max_stop=0,
    logprobs=None,
    reasoning_efforts=_THINKING_EFFORTS,
)
CLAUDE = Capabilities(
    betas=True,
    json_object="tool",
    temperature=(0.0, 1.0),
    top_k=True,
    temperature_with_top_p=False,
    seed=False,
    penalties=False,
    max_stop=None,
    logprobs=None,
    reasoning_efforts=_THINKING_EFFORTS | {"none"},
    thinking_budget=(1024, 31_999),
    budget_below_max_tokens=True,
    sampling_with_reasoning=False,
    forced_tool_with_reasoning=False,
    prefill_with_reasoning=False,
)
# Opus 4.1 predates JSON outputs and strict tools: a schema is asked for through a forced tool call.
CLAUDE_OPUS_4_1 = replace(CLAUDE, json_schema="tool", strict_tools=False)
GEMINI_FLASH = Capabilities(
    strict_tools=False,
    parallel_tool_calls=False,
    top_k=True,
    penalties=False,
    max_stop=5,
    logprobs=None,
    reasoning_efforts=_THINKING_EFFORTS | {"none"},
    thinking_budget=(0, 24_576),
)
# 2.5 Pro always thinks: it has no "none".
GEMINI_PRO = replace(GEMINI_FLASH, reasoning_efforts=_THINKING_EFFORTS, thinking_budget=(128, 32_768))
MOCK = Capabilities(
    json_schema="none",
    json_object="none",
    strict_tools=False,
    tool_choice=frozenset({"auto"}),
    parallel_tool_calls=False,
    top_k=True,
    max_stop=None,
    logprobs=None,
)
# An OpenAI-compatible server judges for itself (its 400 reaches the client); operators narrow this.
COMPATIBLE = Capabilities(max_stop=None, reasoning_efforts=ALL_EFFORTS)

_OPENAI_REASONING_PREFIXES = ("gpt-5", "o1", "o3", "o4")


def default_capabilities(provider: str, upstream: str) -> Capabilities:
    """The family defaults for a model nobody described: by provider, and for OpenAI by model name."""
    if provider == "openai":
        reasoning = upstream.startswith(_OPENAI_REASONING_PREFIXES) and "-chat" not in upstream
        return OPENAI_REASONING if reasoning else OPENAI_CHAT
    if provider == "anthropic":
        return CLAUDE
    if provider == "gemini":
        return GEMINI_PRO if "-pro" in upstream else GEMINI_FLASH
    if provider == "mock":
        return MOCK
    return COMPATIBLE


def capabilities_of(spec: ModelSpec) -> Capabilities:
    return spec.capabilities or default_capabilities(spec.provider, spec.upstream)


def accepts_prefill(spec: ModelSpec, request: ChatRequest) -> bool:
    """Whether a continuation of this request may go to `spec` as a prefill (a trailing assistant turn).

    Claude with thinking on refuses one (the final assistant turn must open with a thinking block).
    """
    return spec.supports_prefill and (not request.reasoning_active or capabilities_of(spec).prefill_with_reasoning)


def for_model(spec: ModelSpec, request: ChatRequest) -> ChatRequest:
    """The request as this model is sent it: structured output through a forced tool where it has no other."""
    rf = request.response_format
    if rf is None or not rf.is_json:
        return request
    caps = capabilities_of(spec)
    mode = caps.json_schema if rf.type == "json_schema" else caps.json_object
    via_tool = mode == "tool"
    if via_tool == rf.via_tool:
        return request
    return replace(request, response_format=replace(rf, via_tool=via_tool))


def unsupported(spec: ModelSpec, request: ChatRequest) -> tuple[Unsupported, ...]:
    """Every field of `request` that `spec` cannot honour, in a stable order. Empty when it can take it all."""
    return refusals(capabilities_of(spec), request)


def can_take_over(spec: ModelSpec, request: ChatRequest) -> bool:
    """Whether `spec` may serve `request` as a fallback: it gives the same kind of answer (schema, tool choice,
    stop sequences, logprobs). What it cannot honour of the sampling is for the face to report."""
    return all(u.kind != "shape" for u in unsupported(spec, request))


def refusals(caps: Capabilities, request: ChatRequest) -> tuple[Unsupported, ...]:
    """`unsupported` for a model described only by its capabilities."""
    out: list[Unsupported] = []
    _sampling(caps, request, out)
    _shape(caps, request, out)
    _reasoning(caps, request, out)
    return tuple(out)


def _range(value: float, allowed: tuple[float, float] | None, what: str) -> str | None:
    if allowed is None:
        return f"takes no {what}"
    low, high = allowed
    if low <= value <= high:
        return None
    if low == high:
        return f"takes only the default {what} ({low:g})"
    return f"takes {what} from {low:g} to {high:g}"


def _sampling(caps: Capabilities, r: ChatRequest, out: list[Unsupported]) -> None:
    thinking = r.reasoning_active and not caps.sampling_with_reasoning
    if r.temperature is not None:
        why = _range(r.temperature, caps.temperature, "temperature")
        if why is None and thinking and r.temperature != 1:
            why = "takes no temperature change while reasoning is on"
        if why:
            out.append(Unsupported("temperature", why))
    if r.top_p is not None:
        why = _range(r.top_p, caps.top_p, "top_p")
        if why is None and thinking and r.top_p < _REASONING_TOP_P_MIN:
            why = f"takes top_p from {_REASONING_TOP_P_MIN:g} to 1 while reasoning is on"
        if why is None and r.temperature is not None and not caps.temperature_with_top_p:
            why = "takes temperature or top_p, not both"
        if why:
            out.append(Unsupported("top_p", why))
    if r.top_k is not None:
        if not caps.top_k:
            out.append(Unsupported("top_k", "takes no top_k"))
        elif thinking:
            out.append(Unsupported("top_k", "takes no top_k while reasoning is on"))
    if r.seed is not None and not caps.seed:
        out.append(Unsupported("seed", "takes no seed"))
    if not caps.penalties:
        # Zero is no penalty at all: that much every model honours.
        if r.presence_penalty:
            out.append(Unsupported("presence_penalty", "takes no presence penalty"))
        if r.frequency_penalty:
            out.append(Unsupported("frequency_penalty", "takes no frequency penalty"))
    if r.stop and caps.max_stop is not None and len(r.stop) > caps.max_stop:
        out.append(
            Unsupported(
                "stop",
                "takes no stop sequences" if caps.max_stop == 0 else f"takes at most {caps.max_stop} stop sequences",
            )
        )
    if r.wants_logprobs:
        if caps.logprobs is None:
            out.append(Unsupported("logprobs", "returns no log probabilities"))
        elif r.top_logprobs is not None and r.top_logprobs > caps.logprobs:
            out.append(Unsupported("top_logprobs", f"returns at most {caps.logprobs} alternatives per token"))


def _shape(caps: Capabilities, r: ChatRequest, out: list[Unsupported]) -> None:
    rf = r.response_format
    if rf is not None and rf.is_json:
        mode = caps.json_schema if rf.type == "json_schema" else caps.json_object
        what = "a JSON schema" if rf.type == "json_schema" else "JSON mode"
        if mode == "none":
            out.append(Unsupported("response_format", f"has no structured output ({what})"))
        elif mode == "tool":
            _forced_tool_format(caps, r, what, out)
    tc = r.tool_choice
    if tc is not None:
        if tc.mode not in caps.tool_choice:
            allowed = ", ".join(sorted(caps.tool_choice))
            out.append(Unsupported("tool_choice", f"takes tool_choice {allowed} only"))
        elif tc.forces_tool and r.reasoning_active and not caps.forced_tool_with_reasoning:
            out.append(Unsupported("tool_choice", "cannot be forced to call a tool while reasoning is on"))
    if r.parallel_tool_calls is False and not caps.parallel_tool_calls:
        out.append(Unsupported("parallel_tool_calls", "cannot turn parallel tool calls off"))
    if r.betas and not caps.betas:
        out.append(Unsupported("betas", f"has no Anthropic beta features ({', '.join(r.betas)})"))
    if not caps.strict_tools:
        for i, tool in enumerate(r.tools):
            if tool.strict:
                out.append(Unsupported("tools.strict", "cannot guarantee tool arguments match a schema", i))


def _forced_tool_format(caps: Capabilities, r: ChatRequest, what: str, out: list[Unsupported]) -> None:
    """A model that gives structured output only as a forced tool call: what that cannot carry."""
    rf = r.response_format
    assert rf is not None
    if rf.strict:
        out.append(
            Unsupported(
                "response_format.strict",
                "cannot guarantee the schema (it asks through a forced tool call); send strict false to accept that",
            )
        )
    if rf.schema is not None and rf.schema.get("type", "object") != "object":
        out.append(Unsupported("response_format", "takes only a schema whose root is an object"))
    if r.tools and (r.tool_choice is None or r.tool_choice.mode != "none"):
        out.append(Unsupported("response_format", f"cannot combine {what} with tools"))
    if r.reasoning_active and not caps.forced_tool_with_reasoning:
        out.append(Unsupported("response_format", f"cannot combine {what} with reasoning"))


def _reasoning(caps: Capabilities, r: ChatRequest, out: list[Unsupported]) -> None:
    rs = r.reasoning
    if rs is None:
        return
    if rs.effort is not None and rs.effort not in caps.reasoning_efforts:
        if caps.reasoning_efforts:
            allowed = ", ".join(e for e in get_args(ReasoningEffort) if e in caps.reasoning_efforts)
            out.append(Unsupported("reasoning_effort", f"takes reasoning effort {allowed}"))
        else:
            out.append(Unsupported("reasoning_effort", "has no reasoning effort"))
    budget = caps.thinking_budget
    if rs.budget_tokens is not None:
        if budget is None:
            out.append(Unsupported("reasoning_budget", "takes no thinking budget in tokens"))
        elif not budget[0] <= rs.budget_tokens <= budget[1]:
            out.append(Unsupported("reasoning_budget", f"takes a thinking budget of {budget[0]} to {budget[1]} tokens"))
        elif caps.budget_below_max_tokens and r.max_tokens is not None and rs.budget_tokens >= r.max_tokens:
            out.append(Unsupported("reasoning_budget", "takes a thinking budget below max_tokens"))
    elif (
        rs.active
        and caps.budget_below_max_tokens
        and budget is not None
        and r.max_tokens is not None
        and r.max_tokens <= budget[0]
    ):
        out.append(Unsupported("reasoning_effort", f"needs max_tokens above {budget[0]} to reason"))
