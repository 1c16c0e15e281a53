"""The three wire formats, rendered event by event exactly as the real APIs frame them.

Each renderer returns `(is_token, bytes)` pairs; the server counts tokens to place faults.
With ``complete=False`` the tail (finish reason, usage, terminator) is left out.
"""

from __future__ import annotations

import json
from typing import Any

from tests.emulators.script import Script

Event = tuple[bool, bytes]

OPENAI_ID = "chatcmpl-emu123"
ANTHROPIC_ID = "msg_emu123"
GEMINI_ID = "emu-resp-123"
REQUEST_ID = "req_emu123"
SIGNATURE = "EmuSignature"  # what the Anthropic emulator signs thinking with, and takes back


def dumps(obj: Any) -> str:
    # Compact and raw UTF-8, as the real APIs send it.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _tool_args(script: Script) -> tuple[str, ...]:
    return script.tool_call.arguments if script.tool_call else ()


def token_count(script: Script) -> int:
    return len(script.pieces()) + len(_tool_args(script)) + len(script.thinking)


# -- OpenAI Chat Completions ---------------------------------------------------------------------------------

_OPENAI_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "content_filter": "content_filter"}


def _openai_chunk(model: str, choices: list[Any], usage: Any = None) -> bytes:
    body = {
        "id": OPENAI_ID,
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": model,
        "system_fingerprint": "fp_emu",
        "choices": choices,
        "usage": usage,
    }
    return f"data: {dumps(body)}\n\n".encode()


def _openai_choice(delta: dict[str, Any], finish: str | None = None, logprobs: Any = None) -> list[Any]:
    return [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]


def logprob_of(n: int, rank: int = 0) -> float:
    """A made-up but stable log probability for the n-th token's rank-th candidate."""
    return round(-0.05 * (n % 7) - 0.5 * rank - 0.01, 4)


def _openai_logprobs(piece: str, n: int, top: int) -> dict[str, Any]:
    def entry(token: str, rank: int) -> dict[str, Any]:
        return {"token": token, "logprob": logprob_of(n, rank), "bytes": list(token.encode())}

    first = entry(piece, 0)
    first["top_logprobs"] = [entry(piece if r == 0 else f"alt{r}", r) for r in range(top)]
    return {"content": [first], "refusal": None}


def openai_events(script: Script, model: str, body: Any, complete: bool) -> list[Event]:
    out: list[Event] = [
        (False, _openai_chunk(model, _openai_choice({"role": "assistant", "content": "", "refusal": None})))
    ]
    asked = isinstance(body, dict) and body.get("logprobs") is True
    top = int(body.get("top_logprobs") or 0) if asked else 0
    for n, piece in enumerate(script.pieces()):
        lp = _openai_logprobs(piece, n, top) if asked else None
        out.append((True, _openai_chunk(model, _openai_choice({"content": piece}, None, lp))))
    tc = script.tool_call
    if tc is not None:
        first = {"index": 0, "id": tc.id, "type": "function", "function": {"name": tc.name, "arguments": ""}}
        out.append((False, _openai_chunk(model, _openai_choice({"tool_calls": [first]}))))
        for piece in tc.arguments:
            call = {"index": 0, "function": {"arguments": piece}}
            out.append((True, _openai_chunk(model, _openai_choice({"tool_calls": [call]}))))
    if not complete:
        return out
    finish = script.raw_finish or _OPENAI_FINISH[script.finish]
    out.append((False, _openai_chunk(model, _openai_choice({}, finish))))
    opts = body.get("stream_options") if isinstance(body, dict) else None
    if isinstance(opts, dict) and opts.get("include_usage"):
        completion = script.output_tokens if script.output_tokens is not None else token_count(script)
        usage = {
            "prompt_tokens": script.input_tokens,
            "completion_tokens": completion,
            "total_tokens": script.input_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": script.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": script.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        out.append((False, _openai_chunk(model, [], usage)))
    out.append((False, b"data: [DONE]\n\n"))
    return out


def openai_error_body(status: int, message: str) -> dict[str, Any]:
    kind, code = {
        400: ("invalid_request_error", None),
        401: ("invalid_request_error", "invalid_api_key"),
        403: ("invalid_request_error", "unsupported_country_region_territory"),
        404: ("invalid_request_error", "model_not_found"),
        429: ("requests", "rate_limit_exceeded"),
    }.get(status, ("server_error", None))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def openai_error_event(status: int, message: str) -> bytes:
    return f"data: {dumps(openai_error_body(status, message))}\n\n".encode()


# -- Anthropic Messages --------------------------------------------------------------------------------------

_ANTHROPIC_FINISH = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}
_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {dumps(data)}\n\n".encode()


def anthropic_events(script: Script, model: str, body: Any, complete: bool) -> list[Event]:
    # Anthropic's input_tokens counts only the uncached part of the prompt.
    uncached = max(0, script.input_tokens - script.cached_tokens - script.cache_creation_tokens)
    start = {
        "type": "message_start",
        "message": {
            "id": ANTHROPIC_ID,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": uncached,
                "output_tokens": 1,
                "cache_creation_input_tokens": script.cache_creation_tokens,
                "cache_read_input_tokens": script.cached_tokens,
            },
        },
    }
    if script.cache_creation_tokens:  # the breakdown by lifetime (the recorded examples wrote nothing)
        start["message"]["usage"]["cache_creation"] = {  # type: ignore[index]
            "ephemeral_5m_input_tokens": script.cache_creation_tokens - script.cache_creation_1h_tokens,
            "ephemeral_1h_input_tokens": script.cache_creation_1h_tokens,
        }
    out: list[Event] = [(False, _sse("message_start", start))]
    index = 0

    def block_start(block: dict[str, Any]) -> None:
        out.append(
            (
                False,
                _sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": block}),
            )
        )

    def delta(d: dict[str, Any], token: bool = True) -> None:
        out.append((token, _sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})))

    def block_stop() -> None:
        out.append((False, _sse("content_block_stop", {"type": "content_block_stop", "index": index})))

    if script.thinking:
        block_start({"type": "thinking", "thinking": "", "signature": ""})
        for piece in script.thinking:
            delta({"type": "thinking_delta", "thinking": piece})
        delta({"type": "signature_delta", "signature": SIGNATURE}, token=False)
        block_stop()
        index += 1
    pieces = script.pieces()
    if pieces:
        block_start({"type": "text", "text": ""})
        if index == 0:
            out.append((False, _sse("ping", {"type": "ping"})))
        for piece in pieces:
            delta({"type": "text_delta", "text": piece})
        block_stop()
        index += 1
    tc = script.tool_call
    if tc is not None:
        tool_id = tc.id if tc.id.startswith("toolu_") else "toolu_emu1"
        block_start({"type": "tool_use", "id": tool_id, "name": tc.name, "input": {}})
        delta({"type": "input_json_delta", "partial_json": ""}, token=False)
        for piece in tc.arguments:
            delta({"type": "input_json_delta", "partial_json": piece})
        block_stop()
    if not complete:
        return out
    completion = script.output_tokens if script.output_tokens is not None else token_count(script)
    finish = script.raw_finish or _ANTHROPIC_FINISH[script.finish]
    out.append(
        (
            False,
            _sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": finish, "stop_sequence": script.stop_sequence},
                    "usage": {"output_tokens": completion},
                },
            ),
        )
    )
    out.append((False, _sse("message_stop", {"type": "message_stop"})))
    return out


def anthropic_error_body(status: int, message: str) -> dict[str, Any]:
    kind = _ANTHROPIC_ERRORS.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": REQUEST_ID}


def anthropic_error_event(status: int, message: str) -> bytes:
    return _sse("error", anthropic_error_body(status, message))


# -- Gemini streamGenerateContent?alt=sse ------------------------------------------------------------------

_GEMINI_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP", "content_filter": "SAFETY"}
_GEMINI_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def _gemini_chunk(
    model: str, parts: list[Any], finish: str | None, usage: dict[str, Any], logprobs: Any = None
) -> bytes:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish is not None:
        candidate["finishReason"] = finish
    if logprobs is not None:
        candidate["logprobsResult"] = logprobs
    body = {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model, "responseId": GEMINI_ID}
    return f"data: {dumps(body)}\r\n\r\n".encode()


def _gemini_logprobs(body: Any, part: dict[str, Any], n: int) -> Any:
    config = body.get("generationConfig", {}) if isinstance(body, dict) else {}
    if config.get("responseLogprobs") is not True or "text" not in part or part.get("thought"):
        return None
    top = int(config.get("logprobs") or 0)
    token = part["text"]
    alternatives = [{"token": token if r == 0 else f"alt{r}", "logProbability": logprob_of(n, r)} for r in range(top)]
    return {
        "topCandidates": [{"candidates": alternatives}],
        "chosenCandidates": [{"token": token, "logProbability": logprob_of(n)}],
    }


def gemini_events(script: Script, model: str, body: Any, complete: bool) -> list[Event]:
    prompt = script.input_tokens
    running = {"promptTokenCount": prompt, "totalTokenCount": prompt}
    parts: list[dict[str, Any]] = [{"text": t, "thought": True} for t in script.thinking]
    parts += [{"text": t} for t in script.pieces()]
    tc = script.tool_call
    if tc is not None:
        parts.append({"functionCall": {"name": tc.name, "args": json.loads("".join(tc.arguments) or "{}")}})
    if not parts and complete:
        parts.append({"text": ""})
    out: list[Event] = []
    for n, part in enumerate(parts):
        last = n == len(parts) - 1
        lp = _gemini_logprobs(body, part, n)
        if not (last and complete):
            out.append((True, _gemini_chunk(model, [part], None, running, lp)))
            continue
        completion = script.output_tokens if script.output_tokens is not None else token_count(script)
        usage: dict[str, Any] = {
            "promptTokenCount": prompt,
            "candidatesTokenCount": completion,
            "totalTokenCount": prompt + completion + script.reasoning_tokens,
        }
        if script.cached_tokens:
            usage["cachedContentTokenCount"] = script.cached_tokens
        usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
        if script.reasoning_tokens:
            usage["thoughtsTokenCount"] = script.reasoning_tokens
        finish = script.raw_finish or _GEMINI_FINISH[script.finish]
        out.append((True, _gemini_chunk(model, [part], finish, usage, lp)))
    return out


def gemini_error_body(status: int, message: str) -> dict[str, Any]:
    return {"error": {"code": status, "message": message, "status": _GEMINI_STATUS.get(status, "UNAVAILABLE")}}


def gemini_error_event(status: int, message: str) -> bytes:
    # "error" must be the first key, or the SDK takes the chunk for an empty response.
    return f"data: {dumps(gemini_error_body(status, message))}\r\n\r\n".encode()


# -- failures each API reports its own way ----------------------------------------------------------------------

# (status, body) as each API answers a prompt over the model's context window.
CONTEXT_LENGTH_ERRORS: dict[str, tuple[int, dict[str, Any]]] = {
    "openai": (
        400,
        {
            "error": {
                "message": "This model's maximum context length is 128000 tokens. However, your messages resulted in "
                "131072 tokens. Please reduce the length of the messages.",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        },
    ),
    "anthropic": (
        400,
        {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": "prompt is too long: 208310 tokens > 200000 maximum"},
            "request_id": REQUEST_ID,
        },
    ),
    "gemini": (
        400,
        {
            "error": {
                "code": 400,
                "message": "The input token count (1200293) exceeds the maximum number of tokens allowed (1048576).",
                "status": "INVALID_ARGUMENT",
            }
        },
    ),
}

# OpenAI refuses a flagged prompt with a 400; Anthropic and Gemini answer 200 and say so in the stream.
OPENAI_REFUSAL: tuple[int, dict[str, Any]] = (
    400,
    {
        "error": {
            "message": "Invalid prompt: your prompt was flagged as potentially violating our usage policy. Please try "
            "again with a different prompt: https://platform.openai.com/docs/guides/reasoning#advice-on-prompting",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_prompt",
        }
    },
)
GEMINI_BLOCK_REASON = "PROHIBITED_CONTENT"


def gemini_blocked(script: Script, model: str) -> list[Event]:
    """A prompt the safety filter blocked: one chunk with `promptFeedback` and no candidates."""
    body = {
        "promptFeedback": {"blockReason": GEMINI_BLOCK_REASON},
        "usageMetadata": {"promptTokenCount": script.input_tokens, "totalTokenCount": script.input_tokens},
        "modelVersion": model,
        "responseId": GEMINI_ID,
    }
    return [(False, f"data: {dumps(body)}\r\n\r\n".encode())]
