"""Gemini over the official `google-genai` SDK (`generate_content_stream`, Developer API, `alt=sse`).

The SDK is given our shared `httpx2` client, so all keys for one base URL share one pool and the
transport errors are the same ones the other adapters see.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any

import httpx2
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from providers import errors
from providers.base import ChatRequest, Credential, ImagePart, Message, TextPart
from providers.events import Finish, FinishReason, ProviderEvent, TextDelta, ToolCallDelta, Usage
from providers.upstream import (
    TRANSPORT_ERRORS,
    ClientCache,
    by_status,
    guess_image_type,
    is_context_overflow,
    is_prefill_refusal,
    retry_after,
    split_data_url,
    transport_error,
)

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
API_VERSION = "v1beta"

_FINISH: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
}


# What a call or a stream may raise: the SDK's errors and the transport errors it lets through.
_FAILURES: tuple[type[BaseException], ...] = (genai_errors.APIError, *TRANSPORT_ERRORS)

# The SDK nests several async generators; closing the outer one leaves the HTTP response to the garbage
# collector. A response hook hands each stream its own response so it can close it at once.
_responses: ContextVar[list[httpx2.Response] | None] = ContextVar("gemini_responses", default=None)


async def _capture(response: httpx2.Response) -> None:
    sink = _responses.get()
    if sink is not None:
        sink.append(response)


def _make_pool(timeout: httpx2.Timeout, limits: httpx2.Limits) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(timeout=timeout, limits=limits, event_hooks={"response": [_capture]})


def _make_client(base_url: str, api_key: str, pool: httpx2.AsyncClient) -> genai.Client:
    # The SDK passes its own per-request timeout (none unless set), overriding the pool's: hand it the read
    # timeout, in milliseconds, so a silent upstream cannot hold a stream forever.
    read = pool.timeout.read
    options = genai_types.HttpOptions(
        base_url=base_url,
        api_version=API_VERSION,
        httpx_async_client=pool,
        timeout=int(read * 1000) if read is not None else None,
    )
    return genai.Client(api_key=api_key or "none", http_options=options)


def _image(part: ImagePart) -> genai_types.Part:
    inline = split_data_url(part.url)
    if inline is not None:
        try:
            data = base64.b64decode(inline[1], validate=True)
        except (binascii.Error, ValueError):
            raise errors.BadRequest("an image data: URL is not valid base64", provider="gemini") from None
        return genai_types.Part.from_bytes(data=data, mime_type=inline[0])
    return genai_types.Part.from_uri(file_uri=part.url, mime_type=guess_image_type(part.url))


def _tool_result(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    return value if isinstance(value, dict) else {"result": value}


def to_contents(request: ChatRequest) -> list[dict[str, Any]]:
    names: dict[str, str] = {}  # tool call id -> function name (Gemini answers by name)
    out: list[dict[str, Any]] = []
    for msg in request.turns():
        parts = _parts(msg, names)
        if not parts:
            continue
        role = "model" if msg.role == "assistant" else "user"
        if out and out[-1]["role"] == role:
            out[-1]["parts"].extend(parts)
        else:
            out.append({"role": role, "parts": parts})
    return out


def _parts(msg: Message, names: dict[str, str]) -> list[Any]:
    if msg.role == "tool":
        name = names.get(msg.tool_call_id or "", msg.tool_call_id or "tool")
        return [{"function_response": {"name": name, "response": _tool_result(msg.text())}}]
    parts: list[Any] = []
    if isinstance(msg.content, str):
        if msg.content:
            parts.append({"text": msg.content})
    else:
        for part in msg.content:
            if isinstance(part, TextPart):
                if part.text:
                    parts.append({"text": part.text})
            elif isinstance(part, ImagePart):
                parts.append(_image(part))
    for call in msg.tool_calls:
        names[call.id] = call.name
        try:
            args = json.loads(call.arguments) if call.arguments else {}
        except ValueError:
            args = {}
        parts.append({"function_call": {"name": call.name, "args": args}})
    return parts


class GeminiProvider:
    name = "gemini"

    def __init__(
        self, base_url: str | None = None, *, clients: ClientCache[genai.Client] | None = None, name: str = "gemini"
    ) -> None:
        self.name = name
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self._clients = clients if clients is not None else ClientCache(_make_client, pool_factory=_make_pool)

    def config(self, request: ChatRequest) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            # The router owns retries and function execution: no SDK-side loops.
            "automatic_function_calling": {"disable": True},
            "automatic_continuation": False,
        }
        system = request.system_prompt()
        if system:
            cfg["system_instruction"] = system
        if request.max_tokens is not None:
            cfg["max_output_tokens"] = request.max_tokens
        if request.temperature is not None:
            cfg["temperature"] = request.temperature
        if request.stop:
            cfg["stop_sequences"] = list(request.stop)
        if request.tools:
            cfg["tools"] = [
                {
                    "function_declarations": [
                        {"name": t.name, "description": t.description, "parameters_json_schema": t.parameters}
                        for t in request.tools
                    ]
                }
            ]
        return cfg

    async def stream(
        self, request: ChatRequest, upstream_model: str, credential: Credential
    ) -> AsyncIterator[ProviderEvent]:
        client = self._clients.get(self.base_url, credential.api_key)
        contents = to_contents(request)
        responses: list[httpx2.Response] = []
        # The SDK sends the request on the first pull, so the hook's context spans that pull.
        token = _responses.set(responses)
        chunk: Any = None
        try:
            upstream = await client.aio.models.generate_content_stream(
                model=upstream_model,
                contents=contents,  # type: ignore[arg-type]
                config=self.config(request),  # type: ignore[arg-type]
            )
            chunk = await upstream.__anext__()
        except StopAsyncIteration:
            chunk = None
        except _FAILURES as exc:
            raise self._error(exc, upstream_model) from exc
        finally:
            _responses.reset(token)
        ended = False
        finish: FinishReason | None = None
        raw_finish: str | None = None
        usage: Usage | None = None
        calls = 0
        try:
            while chunk is not None:
                meta = chunk.usage_metadata
                if meta is not None:
                    thoughts = meta.thoughts_token_count or 0
                    usage = Usage(
                        meta.prompt_token_count or 0,
                        (meta.candidates_token_count or 0) + thoughts,
                        meta.cached_content_token_count or 0,
                        thoughts,
                    )
                if chunk.candidates:
                    cand = chunk.candidates[0]
                    content = cand.content
                    if content is not None and content.parts:
                        for part in content.parts:
                            if part.function_call is not None:
                                fc = part.function_call
                                yield ToolCallDelta(
                                    calls, fc.id or f"call_{calls}", fc.name or "", json.dumps(fc.args or {})
                                )
                                calls += 1
                            elif part.text and not part.thought:
                                yield TextDelta(part.text)
                    if cand.finish_reason is not None:
                        reason = str(getattr(cand.finish_reason, "value", cand.finish_reason))
                        finish, raw_finish = _FINISH.get(reason, "other"), reason
                        if finish == "stop" and calls:
                            finish = "tool_calls"
                else:
                    feedback = chunk.prompt_feedback
                    if feedback is not None and feedback.block_reason is not None:
                        reason = str(getattr(feedback.block_reason, "value", feedback.block_reason))
                        raise errors.ContentRefused(
                            feedback.block_reason_message or f"prompt blocked: {reason}",
                            provider=self.name,
                            model=upstream_model,
                            provider_code=reason,
                        )
                try:
                    chunk = await upstream.__anext__()
                except StopAsyncIteration:
                    chunk = None
            ended = True
        except _FAILURES as exc:
            ended = True
            raise self._error(exc, upstream_model) from exc
        finally:
            if not ended:
                await _close_early(upstream, responses)
        if finish is None:
            raise errors.Truncated("stream ended without a finish reason", provider=self.name, model=upstream_model)
        if usage is not None:
            yield usage
        yield Finish(finish, raw_finish)

    def _error(self, exc: BaseException, model: str) -> errors.ProviderError:
        kw: dict[str, Any] = {"provider": self.name, "model": model}
        if isinstance(exc, genai_errors.APIError):
            message = exc.message or str(exc)
            status = exc.code if isinstance(exc.code, int) else 500
            headers = getattr(exc.response, "headers", None)
            kw["provider_code"] = exc.status or str(status)
            if status == 429:
                wait = retry_after(headers) if headers is not None else None
                return errors.RateLimited(message, retry_after=wait or _retry_delay(exc.details), **kw)
            if status == 400 and "api key" in message.lower():
                return errors.AuthFailed(message, **kw)
            if status == 400 and is_prefill_refusal(message):
                return errors.PrefillRejected(message, **kw)
            if status == 400 and is_context_overflow(message):
                return errors.ContextLengthExceeded(message, **kw)
            return by_status(status, message, headers=headers, **kw)
        if isinstance(exc, TRANSPORT_ERRORS):
            return transport_error(exc, **kw)
        return errors.ServerError(f"{type(exc).__name__}: {exc}", **kw)

    async def aclose(self) -> None:
        await self._clients.aclose()


async def _close_early(upstream: Any, responses: list[httpx2.Response]) -> None:
    """Close the response now, then let the SDK's generators unwind on the closed stream."""
    for response in responses:
        await response.aclose()
    # One more pull ends the nested generators through their own error paths instead of leaving
    # them to the garbage collector.
    with contextlib.suppress(StopAsyncIteration, genai_errors.APIError, RuntimeError, *TRANSPORT_ERRORS):
        await upstream.__anext__()
    await upstream.aclose()


def _retry_delay(details: Any) -> float | None:
    """Gemini puts the wait in a RetryInfo detail: {"retryDelay": "7s"}."""
    error = details.get("error") if isinstance(details, dict) else None
    for item in (error or {}).get("details", []) if isinstance(error, dict) else []:
        delay = item.get("retryDelay") if isinstance(item, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return float(delay[:-1])
            except ValueError:
                return None
    return None
