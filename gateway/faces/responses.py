"""The OpenAI Responses API face: a stream's events as Responses stream events over SSE (`response.created` …
`response.completed`, each with its `sequence_number`), or as one `response` object at the end.

One `Output` turns the stream's events into output items for both: reasoning (when the request asked for a
summary), the assistant message, and function calls. Function calls are sent whole once the answer is done,
because until then a restart on the next model may void them, and a call the client has seen complete is one it
may run. Text streams as it comes: a restart or a seam (`mode: "restart"`, or the next model rewriting what was
said) closes the message as `incomplete` and opens a new one, which starts with the text kept; the final
`output` (of `response.completed`, of `GET /v1/responses/{id}`, of a non-streaming reply) holds only the items
that stand. What the API has no field for (fallbacks, seams, cost) rides in an extra `gateway` object, on the
response and on a `response.in_progress` event when a fallback or a seam happens.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import orjson
from starlette.responses import Response

from gateway.errors import error_response
from gateway.faces import sse
from gateway.faces.answer import Gathered
from gateway.faces.response_items import CallItem, Item, Json, MessageItem, ReasoningItem, Status, logprob_json
from gateway.responses_body import ResponsesBody
from sessions.errors import GatewayError
from sessions.events import Delta, Done, Draining, Error, Event, Fallback, Logprobs, Reasoning, Seam
from sessions.log import LogEntry

_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter", "cancelled": "cancelled"}


def response_id(stream_id: str) -> str:
    return "resp_" + stream_id.removeprefix("st_")


def response_of_item(item_id: str) -> str | None:
    """The response an output item belongs to (its id is `<kind>_<response key>_<index>`)."""
    kind, _, rest = item_id.partition("_")
    key, _, index = rest.rpartition("_")
    return "resp_" + key if kind in ("msg", "rs", "fc") and key and index.isdigit() else None


class ResponseHead:
    """The parts of the `response` object that echo the request."""

    def __init__(self, body: ResponsesBody, stream_id: str, *, stored: bool) -> None:
        self.id = response_id(stream_id)
        self.created_at = int(time.time())
        fmt = body.text.format if body.text is not None and body.text.format is not None else None
        reasoning = body.reasoning
        self.echo: Json = {
            "instructions": body.instructions,
            "max_output_tokens": body.max_output_tokens,
            "max_tool_calls": None,
            "model": body.model,  # the model asked for; the one that answered is in `gateway.segments`
            "parallel_tool_calls": body.parallel_tool_calls is not False,
            "previous_response_id": body.previous_response_id,
            "reasoning": {
                "effort": reasoning.effort if reasoning else None,
                "summary": (reasoning.summary or reasoning.generate_summary) if reasoning else None,
            },
            "safety_identifier": body.safety_identifier,
            "service_tier": None,
            "store": stored,
            "temperature": body.temperature,
            "text": {
                "format": fmt.model_dump(by_alias=True, exclude_none=True) if fmt else {"type": "text"},
                "verbosity": "medium",
            },
            "tool_choice": _tool_choice(body),
            "tools": list(body.tools or ()),
            "top_logprobs": body.top_logprobs,
            "top_p": body.top_p,
            "truncation": "disabled",
            "user": body.user,
            "metadata": dict(body.metadata or {}),
        }

    def body(self, status: str, output: list[Json], **fields: Any) -> Json:
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": False,
            "error": None,
            "incomplete_details": None,
            **self.echo,
            "output": output,
            "usage": None,
            **fields,
        }


def _tool_choice(body: ResponsesBody) -> Any:
    tc = body.tool_choice
    if tc is None or isinstance(tc, str):
        return tc or "auto"
    return tc if isinstance(tc, dict) else tc.model_dump()


class Output(Gathered):
    """The response as its items, built up from the stream's events. `on(event)` and `text(...)` return the stream
    events that say what changed (without sequence numbers: the encoder numbers them)."""

    def __init__(
        self, head: ResponseHead, stream_id: str, model: str, *, show_reasoning: bool, encrypted_reasoning: bool
    ) -> None:
        super().__init__(stream_id, model)
        self.head = head
        self._key = stream_id.removeprefix("st_")
        self.show_reasoning = show_reasoning
        self.encrypted_reasoning = encrypted_reasoning
        self.items: list[Item] = []
        self.void: set[int] = set()
        self.msg: MessageItem | None = None
        self.thinking: ReasoningItem | None = None
        self.final: Json | None = None  # the response as it ended (completed, incomplete or failed)

    # -- items ------------------------------------------------------------------------------------------------

    def _new_id(self, kind: str) -> str:
        return f"{kind}_{self._key}_{len(self.items)}"

    def message(self) -> tuple[MessageItem, list[Json]]:
        """The open message, opening one (and closing the reasoning before it) if there is none."""
        if self.msg is not None:
            return self.msg, []
        out = self._close_thinking()
        self.msg = MessageItem(self._new_id("msg"), len(self.items))
        self.items.append(self.msg)
        return self.msg, out + self.msg.opened()

    def _close_message(self, status: Status = "completed") -> list[Json]:
        msg, self.msg = self.msg, None
        if msg is None:
            return []
        return msg.closed() if status == "completed" else msg.abandoned()

    def _close_thinking(self) -> list[Json]:
        item, self.thinking = self.thinking, None
        return item.closed() if item is not None else []

    def _void_messages(self) -> list[Json]:
        out = self._close_message("incomplete")
        self.void |= {i.index for i in self.items if isinstance(i, MessageItem)}
        return out

    def held_text(self) -> str:
        return "".join(t for i in self.items if isinstance(i, MessageItem) and i.index not in self.void for t in i.text)

    def output(self) -> list[Json]:
        return [i.item() for i in self.items if i.index not in self.void]

    # -- events -----------------------------------------------------------------------------------------------

    def on(self, ev: Event) -> list[Json]:
        if isinstance(ev, Reasoning):
            return self._reasoning(ev.text) if self.show_reasoning and ev.text else []
        if isinstance(ev, Logprobs):
            msg, out = self.message()
            return [*out, msg.logprobs_event([logprob_json(t) for t in ev.tokens])]
        if isinstance(ev, Seam):
            return self._seam(ev)
        self.take(ev)
        if isinstance(ev, Fallback):
            out = self._void_messages() if ev.mode == "restart" else []
            return [*out, self._notice({"fallback": ev.wire()})]
        if isinstance(ev, Done):
            return self._done(ev)
        if isinstance(ev, Error | Draining):
            return self._failed()
        return []

    def add_text(self, text: str) -> None:
        """A delta, when no frame is sent for it (a reply in one body)."""
        msg, _ = self.message()
        msg.text.append(text)

    def _reasoning(self, text: str) -> list[Json]:
        out: list[Json] = []
        if self.thinking is None:
            out += self._close_message()
            self.thinking = ReasoningItem(self._new_id("rs"), len(self.items), encrypted=self.encrypted_reasoning)
            self.items.append(self.thinking)
            out += self.thinking.opened()
        out.append(self.thinking.delta(text))
        return out

    def _seam(self, ev: Seam) -> list[Json]:
        held = self.held_text()
        out = [self._notice({"seam": ev.wire()})]
        if ev.keep_chars >= len(held):
            return out
        out += self._void_messages()
        kept = held[: ev.keep_chars]
        if kept:
            msg, opened = self.message()
            msg.text.append(kept)
            out += [*opened, {"type": "response.output_text.delta", **_where(msg), "delta": kept, "logprobs": []}]
        return out

    def _notice(self, gateway: Json) -> Json:
        return {"type": "response.in_progress", "response": self.head.body("in_progress", []), "gateway": gateway}

    def _done(self, done: Done) -> list[Json]:
        out = [*self._close_thinking(), *self._close_message()]
        for index, call in sorted(self.tool_calls.items()):
            item = CallItem(
                self._new_id("fc"),
                len(self.items),
                call.id or f"call_{self._key}_{index}",
                call.name or "",
                "".join(call.arguments),
            )
            self.items.append(item)
            out += item.events()
        reason = _INCOMPLETE.get(str(done.finish_reason))
        status = "incomplete" if reason else "completed"
        self.final = self.head.body(
            status,
            self.output(),
            incomplete_details={"reason": reason} if reason else None,
            usage=self.usage(),
            gateway=self.gateway(),
        )
        out.append({"type": f"response.{status}", "response": self.final})
        return out

    def _failed(self) -> list[Json]:
        err = self.error
        assert err is not None
        out = [*self._close_thinking(), *self._close_message("incomplete")]
        error = {"code": err.code, "message": err.message}
        self.final = self.head.body("failed", self.output(), error=error, usage=self.usage(), gateway=self.gateway())
        out.append({"type": "response.failed", "response": self.final})
        return out

    def usage(self) -> Json:
        inp, out, cached, reasoning = self.usage_totals()
        segs = self.done.segments if self.done is not None else self.segments
        writes = sum(s.usage.cache_write_input_tokens for s in segs)
        return {
            "input_tokens": inp,
            "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": writes},
            "output_tokens": out,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": inp + out,
        }

    def cost(self) -> Decimal | None:
        return self.done.cost_usd if self.done is not None else None


def _where(msg: MessageItem) -> Json:
    return {"item_id": msg.id, "output_index": msg.index, "content_index": 0}


class ResponseEvents:
    """Streaming: every event a `text/event-stream` frame with `event:` and `data:`, numbered from 0."""

    def __init__(self, output: Output) -> None:
        self.output = output
        self._seq = 0
        self._begun = False

    def _frames(self, events: Sequence[Json]) -> list[bytes]:
        parts: list[bytes] = []
        for ev in events:
            ev["sequence_number"] = self._seq
            self._seq += 1
            parts += sse.event(ev["type"].encode(), orjson.dumps(ev))
        return parts

    def _begin(self) -> list[bytes]:
        self._begun = True
        snapshot = self.output.head.body("in_progress", [])
        return self._frames(
            [{"type": "response.created", "response": snapshot}, {"type": "response.in_progress", "response": snapshot}]
        )

    def events(self, batch: Sequence[LogEntry]) -> bytes | None:
        out = self.output
        parts = self._begin() if not self._begun else []
        for entry in batch:
            ev = entry.event
            if type(ev) is Delta:
                msg = out.msg
                if msg is None:
                    msg, opened = out.message()
                    parts += self._frames(opened)
                parts.append(msg.delta_frame(self._seq, ev.text))
                self._seq += 1
                continue
            changed = out.on(ev)
            if changed:
                parts += self._frames(changed)
        return b"".join(parts) if parts else None

    def failed(self, error: GatewayError) -> bytes | None:
        """The follow cannot go on: an `error` event (the response may still be running elsewhere)."""
        parts = self._begin() if not self._begun else []
        parts += self._frames([{"type": "error", "code": error.code, "message": error.message, "param": None}])
        return b"".join(parts)

    def end(self) -> bytes | None:
        return None


class ResponseReply:
    """Not streaming: everything is gathered, then one `response` (or the error, with its status)."""

    def __init__(self, output: Output) -> None:
        self.output = output

    def events(self, batch: Sequence[LogEntry]) -> Response | None:
        out = self.output
        for entry in batch:
            ev = entry.event
            if type(ev) is Delta:
                out.add_text(ev.text)
            else:
                out.on(ev)
        return None

    def failed(self, error: GatewayError) -> Response | None:
        self.output.error, self.output.final = error, None
        return None

    def end(self) -> Response:
        out = self.output
        if out.final is None or out.final["status"] == "failed":
            err = out.error or GatewayError("internal", "internal", "the stream ended without an answer")
            return error_response(err, "openai")
        return Response(orjson.dumps(out.final), media_type="application/json", headers={"x-stream-id": out.stream_id})
