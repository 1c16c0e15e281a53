"""A request fitted to its chain before the stream starts: what the first model cannot take is refused (strict)
or dropped and reported (lenient), and a fallback that cannot take what remains is left out, by name.

`providers.capabilities.unsupported` says, per model, which fields of a request it cannot honour. A face asks
for a fit through `StartParams.fit` (a `ParamPolicy`: strict or lenient, and the face's names for the fields);
`SessionManager.start` runs it on the chain the user has keys for, and the session keeps the result
(`StreamSession.fitted`) for the face to report. Faces that ask for no fit keep the router's own rule (a fallback
that would answer in another shape is skipped as `cannot_honour`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from providers.base import ChatRequest
from providers.capabilities import CHAT_FIELDS, Param, Unsupported, unsupported
from providers.catalog import ModelSpec
from sessions.errors import GatewayError, fail

# Dropping a field can make another one fine (a schema without tools): the check runs again, a few times at most.
_MAX_ROUNDS = 4


@dataclass(slots=True, frozen=True)
class ParamPolicy:
    """How a face wants the fields a model cannot take handled: refused (`strict`) or dropped and reported."""

    strict: bool = True
    names: Mapping[Param, str] = field(default_factory=lambda: CHAT_FIELDS)


@dataclass(slots=True, frozen=True)
class DroppedParam:
    """A field left out of the request because the model cannot take it (lenient)."""

    param: str  # as the face names it
    model: str
    reason: str


@dataclass(slots=True, frozen=True)
class LeftOut:
    """A fallback left out of the chain: it cannot take `params` (as the face names them) of the request."""

    model: str
    provider: str
    params: tuple[str, ...]
    reason: str = "cannot_honour"


@dataclass(slots=True, frozen=True)
class Fitted:
    request: ChatRequest
    chain: tuple[ModelSpec, ...]
    dropped: tuple[DroppedParam, ...] = ()
    left_out: tuple[LeftOut, ...] = ()


def fit(request: ChatRequest, chain: Sequence[ModelSpec], policy: ParamPolicy) -> Fitted:
    """The request and chain as they will run. Raises `unsupported_parameter` when the first model cannot take a
    field of a strict request (naming the field, in `param`, and the model)."""
    first = chain[0]
    dropped: list[DroppedParam] = []
    for _ in range(_MAX_ROUNDS):
        refused = unsupported(first, request)
        if not refused:
            break
        if policy.strict:
            raise refusal(first, refused, policy.names)
        dropped += (DroppedParam(u.field_in(policy.names), first.id, u.reason) for u in refused)
        request = without(request, refused)
    still = unsupported(first, request)
    if still:  # a field this module cannot leave out
        raise refusal(first, still, policy.names)
    kept = [first]
    left_out: list[LeftOut] = []
    for spec in chain[1:]:
        cannot = unsupported(spec, request)
        if cannot:
            fields = tuple(dict.fromkeys(u.field_in(policy.names) for u in cannot))
            left_out.append(LeftOut(spec.id, spec.provider, fields))
        else:
            kept.append(spec)
    return Fitted(request, tuple(kept), tuple(dropped), tuple(left_out))


def refusal(spec: ModelSpec, refused: Sequence[Unsupported], names: Mapping[Param, str]) -> GatewayError:
    first = refused[0].field_in(names)
    said = "; ".join(f"{u.field_in(names)}: {spec.id} {u.reason}" for u in refused)
    return fail("unsupported_parameter", said, details={"param": first, "model": spec.id})


def without(request: ChatRequest, refused: Sequence[Unsupported]) -> ChatRequest:
    """The request with each refused field left out (as if the client had not sent it)."""
    r = request
    for u in refused:
        r = _drop(r, u)
    return r


# What leaving a field out means for the request: the fields set back to "not asked for".
_CLEARED: dict[Param, dict[str, Any]] = {
    "temperature": {"temperature": None},
    "top_p": {"top_p": None},
    "top_k": {"top_k": None},
    "seed": {"seed": None},
    "presence_penalty": {"presence_penalty": None},
    "frequency_penalty": {"frequency_penalty": None},
    "stop": {"stop": ()},
    "logprobs": {"logprobs": False, "top_logprobs": None},
    "top_logprobs": {"top_logprobs": None},
    "response_format": {"response_format": None},
    "tool_choice": {"tool_choice": None},
    "parallel_tool_calls": {"parallel_tool_calls": None},
    "reasoning_effort": {"reasoning": None},
    "reasoning_budget": {"reasoning": None},
}


def _drop(r: ChatRequest, u: Unsupported) -> ChatRequest:
    if u.param == "response_format.strict" and r.response_format is not None:
        return replace(r, response_format=replace(r.response_format, strict=None))
    if u.param == "tools.strict" and u.index is not None:
        tools = list(r.tools)
        tools[u.index] = replace(tools[u.index], strict=None)
        return replace(r, tools=tuple(tools))
    return replace(r, **_CLEARED.get(u.param, {}))
