"""Build StreamRecords for store and ledger tests without running a stream."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from providers.events import Usage
from providers.segments import Segment
from sessions.records import StreamRecord, StreamStatus

SegSpec = tuple[str, str, int, int, str]  # provider, model, input tokens, output tokens, cost


def new_user() -> str:
    return str(uuid.uuid4())


def record(
    stream_id: str,
    user_id: str,
    started_at: datetime,
    segments: Sequence[SegSpec] = (("mock", "mock", 10, 20, "0.0001"),),
    *,
    status: StreamStatus = "done",
    failed_first: bool = False,
) -> StreamRecord:
    segs = []
    for n, (provider, model, inp, out, cost) in enumerate(segments, start=1):
        failed = failed_first and n == 1 and len(segments) > 1
        segs.append(
            Segment(
                number=n,
                model=model,
                provider=provider,
                status="failed" if failed else "ok",
                reason="server_error" if failed else None,
                usage=Usage(
                    inp,
                    out,
                    cached_input_tokens=inp // 10,
                    reasoning_tokens=out // 5,
                    cache_write_input_tokens=inp // 20,
                ),
                estimated=failed,
                cost_usd=Decimal(cost),
                chars=out * 4,
                ttft_ms=None if failed else 12.5 + n,
                duration_ms=100.0 * n,
                provider_code="server_error" if failed else None,
                provider_message="The server had an error while processing your request." if failed else None,
            )
        )
    return StreamRecord(
        stream_id=stream_id,
        user_id=user_id,
        client_id="c-" + stream_id[-4:],
        requested_model=segments[0][1],
        status=status,
        finish_reason="stop" if status == "done" else None,
        error_code=None if status in ("done", "cancelled") else status,
        started_at=started_at,
        ended_at=started_at + timedelta(milliseconds=250),
        segments=segs,
        ttft_ms=14.25,
    )
