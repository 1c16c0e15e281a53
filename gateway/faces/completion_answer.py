"""What a Chat Completions reply says about one stream, kept up to date from its events, in OpenAI's JSON.

`model` is always the model the client asked for, whichever model answers (OpenAI's SDKs, LangChain and the
tracing tools built on them read it as "the model of this completion"); the model that answered, the fallbacks,
the seams, each segment's cost, the fields dropped and the fallbacks left out travel in an extra top-level
`gateway` object, which the official clients keep as an extra attribute.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson
from starlette.responses import Response

from gateway.errors import error_response
from providers.events import TokenLogprob
from providers.segments import Segment
from sessions.errors import GatewayError, fail, kind_of
from sessions.events import (
    Delta,
    Done,
    Draining,
    Error,
    Event,
    Fallback,
    Logprobs,
    Reasoning,
    Seam,
    SegmentUsage,
    Started,
    ToolCallDelta,
)
from sessions.fit import DroppedParam, LeftOut
from sessions.segment_json import event_segment_json

_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "content_filter": "content_filter"}


class _Call:
    __slots__ = ("arguments", "id", "name")

    def __init__(self) -> None:
        self.id: str | None = None
        self.name: str | None = None
        self.arguments: list[str] = []


def logprob_json(t: TokenLogprob) -> dict[str, Any]:
    """One token's log probability as Chat Completions writes it (`choices[].logprobs.content[]`)."""
    return {
        "token": t.token,
        "logprob": t.logprob,
        "bytes": None if t.bytes is None else list(t.bytes),
        "top_logprobs": [
            {"token": x.token, "logprob": x.logprob, "bytes": None if x.bytes is None else list(x.bytes)} for x in t.top
        ],
    }


def dropped_json(dropped: Sequence[DroppedParam]) -> list[dict[str, str]]:
    return [{"param": d.param, "model": d.model, "reason": d.reason} for d in dropped]


def dropped_header(dropped: Sequence[DroppedParam]) -> str:
    """`x-gateway-dropped-params`: the fields left out, comma-separated, each once."""
    return ", ".join(dict.fromkeys(d.param for d in dropped))


class Answer:
    def __init__(
        self,
        stream_id: str,
        model: str,
        *,
        dropped: Sequence[DroppedParam] = (),
        left_out: Sequence[LeftOut] = (),
    ) -> None:
        self.id = "chatcmpl-" + stream_id.removeprefix("st_")
        self.stream_id = stream_id
        self.created = int(time.time())
        self.model = model  # the model asked for: what every chunk names
        self.answering = model  # the model answering at this moment
        self.dropped = tuple(dropped)
        self.left_out = {m.model: m for m in left_out}
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.logprobs: list[TokenLogprob] = []
        self.tool_calls: dict[int, _Call] = {}
        self.fallbacks: list[dict[str, Any]] = []
        self.segments: list[Segment] = []
        self.done: Done | None = None
        self.error: GatewayError | None = None

    def take(self, ev: Event) -> None:
        if isinstance(ev, Delta):
            self.text.append(ev.text)
        elif isinstance(ev, ToolCallDelta):
            call = self.tool_calls.setdefault(ev.index, _Call())
            call.id = ev.call_id if ev.call_id is not None else call.id
            call.name = ev.name if ev.name is not None else call.name
            call.arguments.append(ev.arguments)
        elif isinstance(ev, Logprobs):
            self.logprobs += ev.tokens
        elif isinstance(ev, Reasoning):
            self.reasoning.append(ev.text)
        elif isinstance(ev, Started):
            self.answering = ev.model
        else:
            self._take_rest(ev)

    def _take_rest(self, ev: Event) -> None:
        if isinstance(ev, Fallback):
            self.fallbacks.append(ev.wire())
            self.answering = ev.to_model
            if ev.mode == "restart":  # the partial answer is void: the next model starts over
                self.text.clear()
                self.tool_calls.clear()
                self.reasoning.clear()
                self.logprobs.clear()
        elif isinstance(ev, Seam):
            kept = "".join(self.text)[: ev.keep_chars]
            self.text[:] = [kept]
        elif isinstance(ev, SegmentUsage):
            self.segments.append(ev.segment)
        elif isinstance(ev, Done):
            self.done = ev
        elif isinstance(ev, Error):
            kind = kind_of(ev.code)
            self.error = GatewayError(kind, ev.code, ev.message, retryable=ev.retryable, retry_after_s=ev.retry_after_s)
        elif isinstance(ev, Draining):
            self.error = fail("draining", ev.message)

    def finish_reason(self) -> str:
        reason = self.done.finish_reason if self.done is not None else None
        return _FINISH.get(str(reason), "stop")

    def usage(self) -> dict[str, Any]:
        segs = self.done.segments if self.done is not None else ()
        inp = sum(s.usage.input_tokens for s in segs)
        out = sum(s.usage.output_tokens for s in segs)
        return {
            "prompt_tokens": inp,
            "completion_tokens": out,
            "total_tokens": inp + out,
            "prompt_tokens_details": {"cached_tokens": sum(s.usage.cached_input_tokens for s in segs)},
            "completion_tokens_details": {"reasoning_tokens": sum(s.usage.reasoning_tokens for s in segs)},
        }

    def gateway(self) -> dict[str, Any]:
        done = self.done
        segs = done.segments if done is not None else self.segments
        return {
            "stream_id": self.stream_id,
            "model": self.answering,
            "cost_usd": str(done.cost_usd) if done is not None else None,
            "estimated": bool(done is not None and any(s.estimated for s in done.segments)),
            "fallbacks": self.fallbacks,
            "segments": [event_segment_json(s) for s in segs],
            "skipped": self._skipped(),
            "dropped_params": dropped_json(self.dropped),
        }

    def _skipped(self) -> list[dict[str, Any]]:
        if self.done is None:
            return [{"model": m.model, "provider": m.provider, "reason": m.reason} for m in self.left_out.values()]
        out = []
        for k in self.done.skipped:
            item: dict[str, Any] = {"model": k.model, "provider": k.provider, "reason": k.reason}
            left = self.left_out.get(k.model)
            if left is not None and k.reason == left.reason:
                item["params"] = list(left.params)
            out.append(item)
        return out

    def headers(self) -> dict[str, str]:
        out = {"x-stream-id": self.stream_id}
        if self.dropped:
            out["x-gateway-dropped-params"] = dropped_header(self.dropped)
        return out

    def chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            **extra,
        }

    def fail(self, error: GatewayError) -> None:
        self.error, self.done = error, None

    def reply(self) -> Response:
        """Not streaming: one `chat.completion`, or the error with its status."""
        if self.error is not None and self.done is None:
            return error_response(self.error, "openai")
        return Response(orjson.dumps(self.completion()), media_type="application/json", headers=self.headers())

    def completion(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.text) or None, "refusal": None}
        if self.tool_calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": "".join(c.arguments)}}
                for _, c in sorted(self.tool_calls.items())
            ]
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        logprobs = {"content": [logprob_json(t) for t in self.logprobs], "refusal": None} if self.logprobs else None
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "message": message, "logprobs": logprobs, "finish_reason": self.finish_reason()}],
            "usage": self.usage(),
            "gateway": self.gateway(),
        }
