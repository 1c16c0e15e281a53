"""StreamRecord <-> plain JSON-able dicts: the ledger spool's line format and the stores' write payload.

Money travels as strings so no float ever touches a cost.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from providers.segments import Segment
from sessions.records import StreamRecord, StreamStatus
from sessions.segment_json import segment_from_json, segment_json


class RecordDecodeError(ValueError):
    """A stored record could not be read back (a torn spool line, a foreign format)."""


def segment_to_dict(s: Segment) -> dict[str, Any]:
    """The one segment encoding, plus what only the ledger keeps."""
    return {**segment_json(s), "chars": s.chars, "duration_ms": s.duration_ms}


def segment_from_dict(d: dict[str, Any]) -> Segment:
    s = segment_from_json(d)
    s.chars = int(d.get("chars", 0))
    s.duration_ms = float(d["duration_ms"])
    return s


def record_to_dict(r: StreamRecord) -> dict[str, Any]:
    """The stream row plus its segments; derived totals are included so SQL needs no arithmetic."""
    return {
        "stream_id": r.stream_id,
        "user_id": r.user_id,
        "client_id": r.client_id,
        "requested_model": r.requested_model,
        "models_tried": r.models_tried,
        "status": r.status,
        "finish_reason": r.finish_reason,
        "error_code": r.error_code,
        "input_tokens": r.input_tokens,
        "output_tokens": r.output_tokens,
        "cached_input_tokens": r.cached_input_tokens,
        "cache_write_input_tokens": r.cache_write_input_tokens,
        "reasoning_tokens": r.reasoning_tokens,
        "cost_usd": str(r.cost_usd),
        "estimated": r.estimated,
        "ttft_ms": r.ttft_ms,
        "duration_ms": r.duration_ms,
        "started_at": r.started_at.isoformat(),
        "ended_at": r.ended_at.isoformat(),
        "segments": [segment_to_dict(s) for s in r.segments],
    }


def record_from_dict(d: dict[str, Any]) -> StreamRecord:
    try:
        segments = [segment_from_dict(s) for s in d["segments"]]
        return StreamRecord(
            stream_id=str(d["stream_id"]),
            user_id=str(d["user_id"]),
            client_id=d.get("client_id"),
            requested_model=str(d["requested_model"]),
            status=cast(StreamStatus, d["status"]),
            finish_reason=d.get("finish_reason"),
            error_code=d.get("error_code"),
            started_at=datetime.fromisoformat(d["started_at"]),
            ended_at=datetime.fromisoformat(d["ended_at"]),
            segments=segments,
            ttft_ms=None if d.get("ttft_ms") is None else float(d["ttft_ms"]),
        )
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise RecordDecodeError(f"not a stream record: {type(exc).__name__}: {exc}") from None
