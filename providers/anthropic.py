"""Anthropic Messages over the official `anthropic` SDK (raw event stream, no accumulating helper)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx2

from providers import errors
from providers.base import ChatRequest, Credential, ImagePart, Message, TextPart
from providers.events import Finish, FinishReason, ProviderEvent, TextDelta, ToolCallDelta, Usage
from providers.sse import open_sdk_stream
from providers.upstream import (
    TRANSPORT_ERRORS,
    ClientCache,
    by_status,
    is_context_overflow,
    is_prefill_refusal,
    refused,
    split_data_url,
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


def _image(part: ImagePart) -> dict[str, Any]:
    inline = split_data_url(part.url)
    if inline is not None:
        return {"type": "image", "source": {"type": "base64", "media_type": inline[0], "data": inline[1]}}
    return {"type": "image", "source": {"type": "url", "url": part.url}}


def _blocks(msg: Message) -> list[dict[str, Any]]:
    if msg.role == "tool":
        return [{"type": "tool_result", "tool_use_id": msg.tool_call_id or "", "content": msg.text()}]
    blocks: list[dict[str, Any]] = []
    if isinstance(msg.content, str):
        if msg.content:
            blocks.append({"type": "text", "text": msg.content})
    else:
        for part in msg.content:
            if isinstance(part, TextPart):
                if part.text:
                    blocks.append({"type": "text", "text": part.text})
            elif isinstance(part, ImagePart):
                blocks.append(_image(part))
    for call in msg.tool_calls:
        try:
            args = json.loads(call.arguments) if call.arguments else {}
        except ValueError:
            args = {}
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": args})
    return blocks


def to_messages(request: ChatRequest) -> list[dict[str, Any]]:
    """Turns in Anthropic's shape: tool results ride in user turns; same-role neighbours are merged."""
    out: list[dict[str, Any]] = []
    for msg in request.turns():
        role = "assistant" if msg.role == "assistant" else "user"
        blocks = _blocks(msg)
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return out


def _aiohttp_pool(timeout: httpx2.Timeout, limits: httpx2.Limits) -> httpx2.AsyncClient:
    """The SDK's own aiohttp transport: its C HTTP parser reads a stream for a fraction of h11's cost."""
    return anthropic.DefaultAioHttpClient(timeout=timeout, limits=limits)


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
        p: dict[str, Any] = {
            "model": upstream_model,
            "messages": to_messages(request),
            "max_tokens": request.max_tokens or self._default_max_tokens,
            "stream": True,
        }
        system = request.system_prompt()
        if system:
            p["system"] = system
        # No temperature: the Messages API of this SDK generation no longer takes sampling parameters.
        if request.stop:
            p["stop_sequences"] = list(request.stop)
        if request.tools:
            p["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters} for t in request.tools
            ]
        return p

    async def stream(
        self, request: ChatRequest, upstream_model: str, credential: Credential
    ) -> AsyncIterator[ProviderEvent]:
        client = self._clients.get(self.base_url, credential.api_key)
        # The SDK sends the request (auth, version header, base URL) and raises its own errors on error
        # statuses; the body is already in wire form, so it goes through `post` rather than the typed
        # `create`, and the event stream is read here without a model object per event.
        events = await open_sdk_stream(
            lambda: client.post(
                "/v1/messages", cast_to=httpx2.Response, body=self.params(request, upstream_model), stream=True
            ),
            _FAILURES,
            lambda exc: self._error(exc, upstream_model),
            provider=self.name,
            model=upstream_model,
        )
        finish: FinishReason | None = None
        stop_reason: str | None = None
        input_tokens = cached = output_tokens = 0
        thinking_chars = 0
        tool_slots: dict[int, int] = {}  # content block index -> tool call number
        try:
            async for name, ev in events:
                if not name:
                    continue  # the API names every event; unnamed data is not part of the protocol
                kind = ev.get("type")
                if kind == "content_block_delta":
                    d = ev["delta"]
                    dtype = d.get("type")
                    if dtype == "text_delta":
                        yield TextDelta(d["text"])
                    elif dtype == "input_json_delta":
                        if d.get("partial_json"):
                            yield ToolCallDelta(tool_slots.get(ev.get("index", 0), 0), None, None, d["partial_json"])
                    elif dtype == "thinking_delta":
                        thinking_chars += len(d.get("thinking", ""))
                elif kind == "content_block_start":
                    block = ev["content_block"]
                    if block.get("type") == "tool_use":
                        slot = tool_slots[ev.get("index", 0)] = len(tool_slots)
                        yield ToolCallDelta(slot, block.get("id"), block.get("name"), "")
                elif kind == "message_start":
                    u = ev["message"].get("usage") or {}
                    cached = u.get("cache_read_input_tokens") or 0
                    input_tokens = (u.get("input_tokens") or 0) + cached + (u.get("cache_creation_input_tokens") or 0)
                    output_tokens = u.get("output_tokens") or 0
                elif kind == "message_delta":
                    stop = (ev.get("delta") or {}).get("stop_reason")
                    if stop is not None:
                        finish, stop_reason = _FINISH.get(stop, "other"), stop
                    output_tokens = (ev.get("usage") or {}).get("output_tokens", output_tokens)
                elif kind == "error":
                    raise self._event_error(ev, upstream_model, events.response.headers)
        finally:
            # Runs on aclose() and on cancellation too: the upstream response is closed at once.
            await events.aclose()
        if finish is None:
            raise errors.Truncated("stream ended without a finish reason", provider=self.name, model=upstream_model)
        # Anthropic counts thinking inside output tokens and does not split it out: estimate the share.
        reasoning = min(output_tokens, (thinking_chars + 3) // 4)
        yield Usage(input_tokens, output_tokens, cached, reasoning)
        yield Finish(finish, stop_reason)

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
