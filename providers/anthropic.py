"""Anthropic Messages over the official `anthropic` SDK (raw event stream, no accumulating helper).

The request body is built in `providers/anthropic_body.py`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx2
import orjson

from providers import errors
from providers.anthropic_body import build_params, forced_tool
from providers.base import ChatRequest, Credential
from providers.events import (
    Finish,
    FinishReason,
    ProviderEvent,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from providers.sse import open_sdk_stream
from providers.upstream import (
    TRANSPORT_ERRORS,
    ClientCache,
    by_status,
    is_context_overflow,
    is_prefill_refusal,
    refused,
    transport_error,
)

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_MAX_TOKENS = 8192  # the API requires max_tokens; this fits every current model's output limit

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_ERROR_TYPES: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 403,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


# What a call or a stream may raise: the SDK's errors and the transport errors it lets through.
_FAILURES: tuple[type[BaseException], ...] = (anthropic.AnthropicError, *TRANSPORT_ERRORS)


def _make_client(base_url: str, api_key: str, pool: httpx2.AsyncClient) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        api_key=api_key or "none", base_url=base_url, max_retries=0, http_client=pool, timeout=pool.timeout
    )


def _aiohttp_pool(timeout: httpx2.Timeout, limits: httpx2.Limits) -> httpx2.AsyncClient:
    """The SDK's own aiohttp transport: its C HTTP parser reads a stream for a fraction of h11's cost."""
    return anthropic.DefaultAioHttpClient(timeout=timeout, limits=limits)


class _StreamState:
    """What one Messages stream has said so far, beyond text: tool blocks, thinking, usage, stop reason.

    With structured output through a forced tool (`forced`), that tool's input is the answer: its JSON
    streams as text and its `tool_use` stop is an ordinary end.
    """

    __slots__ = (
        "cache_write",
        "cache_write_1h",
        "cached",
        "finish",
        "forced",
        "input_tokens",
        "json_blocks",
        "output_tokens",
        "stop_reason",
        "stop_sequence",
        "thinking_chars",
        "thinking_tokens",
        "tool_slots",
    )

    def __init__(self, forced: str | None) -> None:
        self.forced = forced
        self.finish: FinishReason | None = None
        self.stop_reason: str | None = None  # Anthropic's own value ("end_turn", "refusal", …)
        self.stop_sequence: str | None = None
        self.input_tokens = self.cached = self.cache_write = self.cache_write_1h = self.output_tokens = 0
        self.thinking_chars = 0
        self.thinking_tokens: int | None = None
        self.tool_slots: dict[int, int] = {}  # content block index -> tool call number
        self.json_blocks: set[int] = set()  # content blocks whose input is the answer's text

    def delta(self, index: int, d: dict[str, Any]) -> ProviderEvent | None:
        dtype = d.get("type")
        if dtype == "input_json_delta":
            piece = d.get("partial_json")
            if not piece:
                return None
            if index in self.json_blocks:
                return TextDelta(piece)
            return ToolCallDelta(self.tool_slots.get(index, 0), None, None, piece)
        if dtype == "thinking_delta":
            text = d.get("thinking", "")
            self.thinking_chars += len(text)
            return ReasoningDelta(text) if text else None
        if dtype == "signature_delta":
            signature = d.get("signature", "")
            return ReasoningDelta("", signature) if signature else None
        return None

    def block_start(self, index: int, block: dict[str, Any]) -> ToolCallDelta | ReasoningDelta | None:
        kind = block.get("type")
        if kind == "redacted_thinking":
            return ReasoningDelta("", redacted=block.get("data", ""))
        if kind != "tool_use":
            return None
        if self.forced is not None and block.get("name") == self.forced:
            self.json_blocks.add(index)
            return None
        slot = self.tool_slots[index] = len(self.tool_slots)
        return ToolCallDelta(slot, block.get("id"), block.get("name"), "")

    def message_start(self, u: dict[str, Any]) -> None:
        self.cached = u.get("cache_read_input_tokens") or 0
        self.cache_write = u.get("cache_creation_input_tokens") or 0
        # Writes by lifetime, when the API breaks them down: an hour's cost more than five minutes'.
        self.cache_write_1h = (u.get("cache_creation") or {}).get("ephemeral_1h_input_tokens") or 0
        # Anthropic's input_tokens is only the uncached part of the prompt.
        self.input_tokens = (u.get("input_tokens") or 0) + self.cached + self.cache_write
        self.output_tokens = u.get("output_tokens") or 0

    def message_delta(self, ev: dict[str, Any]) -> None:
        delta = ev.get("delta") or {}
        stop = delta.get("stop_reason")
        self.stop_sequence = delta.get("stop_sequence") or self.stop_sequence
        if stop is not None:
            self.stop_reason = stop
            self.finish = "stop" if stop == "tool_use" and self.json_blocks else _FINISH.get(stop, "other")
        u = ev.get("usage") or {}
        self.output_tokens = u.get("output_tokens", self.output_tokens)
        details = u.get("output_tokens_details") or {}
        if details.get("thinking_tokens") is not None:
            self.thinking_tokens = details["thinking_tokens"]

    def usage(self) -> Usage:
        reasoning = self.thinking_tokens
        if reasoning is None:
            # Without a breakdown, thinking hides inside output tokens: estimate its share from the text.
            reasoning = min(self.output_tokens, (self.thinking_chars + 3) // 4)
        return Usage(
            self.input_tokens, self.output_tokens, self.cached, reasoning, self.cache_write, self.cache_write_1h
        )


class AnthropicProvider:
    name = "anthropic"

    def __init__(
        self,
        base_url: str | None = None,
        *,
        clients: ClientCache[anthropic.AsyncAnthropic] | None = None,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        name: str = "anthropic",
    ) -> None:
        self.name = name
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self._clients = clients if clients is not None else ClientCache(_make_client, pool_factory=_aiohttp_pool)
        self._default_max_tokens = default_max_tokens

    def params(self, request: ChatRequest, upstream_model: str) -> dict[str, Any]:
        return build_params(request, upstream_model, self._default_max_tokens, provider=self.name)

    async def stream(
        self, request: ChatRequest, upstream_model: str, credential: Credential
    ) -> AsyncIterator[ProviderEvent]:
        client = self._clients.get(self.base_url, credential.api_key)
        # The SDK sends the request (auth, version header, base URL) and raises its own errors on error
        # statuses; the body is already in wire form, so it goes through `post` rather than the typed
        # `create`, and the event stream is read here without a model object per event.
        events = await open_sdk_stream(
            lambda: client.post(
                "/v1/messages",
                cast_to=httpx2.Response,
                content=orjson.dumps(self.params(request, upstream_model)),  # not the SDK's stdlib json
                options={"headers": {"anthropic-beta": ",".join(request.betas)}} if request.betas else {},
                stream=True,
            ),
            _FAILURES,
            lambda exc: self._error(exc, upstream_model),
            provider=self.name,
            model=upstream_model,
        )
        read = _StreamState(forced_tool(request))
        try:
            async for name, ev in events:
                if not name:
                    continue  # the API names every event; unnamed data is not part of the protocol
                kind = ev.get("type")
                if kind == "content_block_delta":
                    d = ev["delta"]
                    if d.get("type") == "text_delta":  # the per-token common case, kept inline
                        yield TextDelta(d["text"])
                    else:
                        out = read.delta(ev.get("index", 0), d)
                        if out is not None:
                            yield out
                elif kind == "content_block_start":
                    started = read.block_start(ev.get("index", 0), ev["content_block"])
                    if started is not None:
                        yield started
                elif kind == "message_start":
                    read.message_start(ev["message"].get("usage") or {})
                elif kind == "message_delta":
                    read.message_delta(ev)
                elif kind == "error":
                    raise self._event_error(ev, upstream_model, events.response.headers)
        finally:
            # Runs on aclose() and on cancellation too: the upstream response is closed at once.
            await events.aclose()
        if read.finish is None:
            raise errors.Truncated("stream ended without a finish reason", provider=self.name, model=upstream_model)
        yield read.usage()
        yield Finish(read.finish, read.stop_reason, read.stop_sequence)

    def _error(self, exc: BaseException, model: str) -> errors.ProviderError:
        kw: dict[str, Any] = {"provider": self.name, "model": model}
        if isinstance(exc, anthropic.APITimeoutError):
            if refused(exc):
                return errors.ConnectionLost("connection to upstream refused", **kw)
            return errors.UpstreamTimeout("upstream timed out", **kw)
        if isinstance(exc, anthropic.APIConnectionError):
            return errors.ConnectionLost("connection to upstream lost", **kw)
        if isinstance(exc, anthropic.APIStatusError):
            return self._status_error(
                exc.status_code, exc.type, exc.api_message or exc.message, exc.response.headers, model
            )
        if isinstance(exc, anthropic.APIError):
            return errors.ServerError(exc.message, **kw)
        if isinstance(exc, TRANSPORT_ERRORS):
            return transport_error(exc, **kw)
        return errors.ServerError(f"{type(exc).__name__}: {exc}", **kw)

    def _event_error(self, ev: dict[str, Any], model: str, headers: httpx2.Headers) -> errors.ProviderError:
        err = ev.get("error") or {}
        return self._status_error(200, err.get("type"), str(err.get("message") or "upstream error"), headers, model)

    def _status_error(
        self, status: int, kind: str | None, message: str, headers: httpx2.Headers, model: str
    ) -> errors.ProviderError:
        kw: dict[str, Any] = {"provider": self.name, "model": model, "provider_code": kind or str(status)}
        if status == 200 or kind in ("overloaded_error", "rate_limit_error", "timeout_error"):
            # An error event inside a 200 stream: its type is all there is to go on.
            status = _ERROR_TYPES.get(kind or "", 500)
        if status == 400:
            if is_prefill_refusal(message):
                return errors.PrefillRejected(message, **kw)
            if "credit balance" in message.lower():
                return errors.AuthFailed(message, **kw)
            if is_context_overflow(message):
                return errors.ContextLengthExceeded(message, **kw)
        return by_status(status, message, headers=headers, **kw)

    async def aclose(self) -> None:
        await self._clients.aclose()
