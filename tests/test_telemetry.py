"""OpenTelemetry traces of real streams through a live gateway: a span per stream and a child span per attempt
(GenAI conventions), the fallback as an event; exported over OTLP when configured, and nothing at all otherwise."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.app import create_app
from tests.conftest import Live, make_settings
from tests.support.clients import SSEEvent, collect_sse, iter_sse, user_msg
from tests.support.process import ROOT, start_gateway
from tests.support.server import free_port, serve

FALLBACK = "why [[mock tokens=12 fail_after=5 only=mock]]"


@pytest.fixture
async def traced(tmp_path: Path) -> AsyncIterator[tuple[Live, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(make_settings(tmp_path), tracer_provider=provider)
    async with serve(app) as url:
        yield Live(url, app), exporter


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def test_a_stream_with_a_midstream_fallback_is_one_span_with_a_child_per_attempt(
    traced: tuple[Live, InMemorySpanExporter],
) -> None:
    live, exporter = traced
    async with httpx.AsyncClient(timeout=20) as client:
        events = await collect_sse(
            client,
            "POST",
            f"{live.url}/v1/chat/stream",
            headers=live.headers(),
            json={"model": "mock", "fallbacks": ["mock-backup"], "messages": user_msg(FALLBACK), "max_tokens": 64},
        )
    done = next(e.data for e in events if e.event == "done")
    usage = [e.data for e in events if e.event == "usage"]
    spans = exporter.get_finished_spans()
    (stream,) = [s for s in spans if s.kind is SpanKind.INTERNAL]
    attempts = sorted((s for s in spans if s.kind is SpanKind.CLIENT), key=lambda s: s.start_time or 0)
    assert len(spans) == 3 and len(attempts) == 2

    a = attrs(stream)
    assert stream.name == "chat mock" and stream.parent is None
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == "mock"
    assert a["gen_ai.response.model"] == "mock-backup"  # the model that finished the answer
    assert a["gen_ai.provider.name"] == a["gen_ai.system"] == "mock"
    assert a["gen_ai.request.max_tokens"] == 64 and a["gen_ai.request.stream"] is True
    assert a["gen_ai.usage.input_tokens"] == done["usage"]["input_tokens"]
    assert a["gen_ai.usage.output_tokens"] == done["usage"]["output_tokens"] > 0
    assert a["gen_ai.response.finish_reasons"] == (done["finish_reason"],)
    assert a["gateway.cost_usd"] == pytest.approx(float(done["cost_usd"])) and a["gateway.cost_usd"] > 0
    assert a["gateway.fallbacks"] == 1 and a["gateway.stream.status"] == "done"
    assert a["gateway.stream.id"] == events[0].data["stream_id"]
    assert a["gen_ai.response.time_to_first_chunk"] > 0
    assert "error.type" not in a and stream.status.status_code is StatusCode.UNSET
    (fallback,) = stream.events
    assert fallback.name == "gateway.fallback"
    assert dict(fallback.attributes or {}) == {
        "gateway.fallback.from": "mock",
        "gateway.fallback.to": "mock-backup",
        "gateway.fallback.reason": "server_error",
        "gateway.fallback.mode": "continue",
        "gateway.fallback.chars_so_far": next(e.data for e in events if e.event == "fallback")["chars_so_far"],
    }

    failed, answered = attempts
    for span, seg in zip(attempts, usage, strict=True):
        assert span.parent is not None and span.parent.span_id == stream.context.span_id
        assert span.context.trace_id == stream.context.trace_id
        s = attrs(span)
        assert span.name == f"chat {seg['model']}" and s["gen_ai.request.model"] == seg["model"]
        assert (s["gen_ai.usage.input_tokens"], s["gen_ai.usage.output_tokens"]) == (
            seg["input_tokens"],
            seg["output_tokens"],
        )
        assert s["gateway.cost_usd"] == pytest.approx(float(seg["cost_usd"]))
        assert s["gateway.segment"] == seg["segment"]
        # the wire rounds to 0.01 ms
        assert s["gen_ai.response.time_to_first_chunk"] == pytest.approx(seg["ttft_ms"] / 1000, abs=1e-5)
    f = attrs(failed)
    assert f["error.type"] == "server_error" and failed.status.status_code is StatusCode.ERROR
    assert "gen_ai.response.model" not in f
    s = attrs(answered)
    assert s["gen_ai.response.model"] == "mock-backup" and s["gen_ai.response.finish_reasons"] == ("stop",)
    assert s["gateway.failover_ms"] >= 0 and "error.type" not in s
    assert (failed.end_time or 0) <= (answered.start_time or 0) <= (answered.end_time or 0) <= (stream.end_time or 0)


async def test_a_failed_and_a_stopped_stream_say_how_they_ended(traced: tuple[Live, InMemorySpanExporter]) -> None:
    live, exporter = traced
    async with httpx.AsyncClient(timeout=20) as client:
        await collect_sse(
            client,
            "POST",
            f"{live.url}/v1/chat/stream",
            headers=live.headers(),
            json={"model": "mock", "fallbacks": [], "messages": user_msg("[[mock fail_after=0 fail=bad_request]]")},
        )
        slow = {"model": "mock", "messages": user_msg("slow [[mock tokens=400 delay_ms=20]]")}
        async with client.stream("POST", f"{live.url}/v1/chat/stream", headers=live.headers(), json=slow) as r:
            async for ev in iter_sse(r):
                if isinstance(ev, SSEEvent) and ev.event == "delta" and ev.data["seq"] == 4:
                    sid = r.headers["x-stream-id"]
                    stop = await client.post(f"{live.url}/v1/streams/{sid}/cancel", headers=live.headers())
                    assert stop.json()["cancelled"] is True
    for _ in range(100):
        if len([s for s in exporter.get_finished_spans() if s.kind is SpanKind.INTERNAL]) == 2:
            break
        await asyncio.sleep(0.05)
    failed, stopped = sorted(
        (s for s in exporter.get_finished_spans() if s.kind is SpanKind.INTERNAL), key=lambda s: s.start_time or 0
    )
    assert attrs(failed)["error.type"] == "bad_request" and failed.status.status_code is StatusCode.ERROR
    assert attrs(failed)["gateway.stream.status"] == "error"
    assert attrs(stopped)["gateway.stream.status"] == "cancelled"
    assert attrs(stopped)["gen_ai.response.finish_reasons"] == ("cancelled",)
    assert stopped.status.status_code is StatusCode.UNSET  # a stop asked for is not an error
    (attempt,) = [s for s in exporter.get_finished_spans() if s.parent and s.parent.span_id == stopped.context.span_id]
    assert attrs(attempt)["gen_ai.response.finish_reasons"] == ("cancelled",)
    assert attrs(attempt)["gen_ai.usage.output_tokens"] > 0  # what was produced before the stop, billed


async def test_traces_go_over_otlp_when_the_endpoint_is_set(tmp_path: Path) -> None:
    received: list[tuple[str, str, bytes]] = []

    async def traces(request: Request) -> Response:
        received.append((request.url.path, request.headers.get("content-type", ""), await request.body()))
        return Response(b"", media_type="application/x-protobuf")

    collector = Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])])
    async with serve(collector) as collector_url:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector_url, "OTEL_BSP_SCHEDULE_DELAY": "50"}
        port = free_port()
        proc, token, log = await start_gateway(tmp_path / "gw", port, **env)
        try:
            async with httpx.AsyncClient(timeout=20) as client:
                await collect_sse(
                    client,
                    "POST",
                    f"http://127.0.0.1:{port}/v1/chat/stream",
                    headers={"authorization": f"Bearer {token}"},
                    json={"model": "mock", "fallbacks": ["mock-backup"], "messages": user_msg(FALLBACK)},
                )
            for _ in range(200):
                if received:
                    break
                await asyncio.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
    assert received, log.read_text()
    path, content_type, _ = received[0]
    assert path == "/v1/traces" and content_type == "application/x-protobuf"
    names = set()
    for _, _, body in received:
        export = ExportTraceServiceRequest.FromString(body)
        for rs in export.resource_spans:
            service = {a.key: a.value.string_value for a in rs.resource.attributes}["service.name"]
            assert service == "agent-gateway"
            names |= {span.name for ss in rs.scope_spans for span in ss.spans}
    assert names == {"chat mock", "chat mock-backup"}


def test_without_an_endpoint_nothing_of_opentelemetry_is_built_or_imported(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from tests.conftest import make_settings\n"
        "from gateway.app import create_app\n"
        f"app = create_app(make_settings(Path({str(tmp_path)!r})))\n"
        "assert app.state.services.tracing is None and app.state.services.sessions.observer is None\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry.sdk')], 'the SDK was imported'\n"
        "assert 'gateway.telemetry' not in sys.modules\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_protocol_whose_exporter_is_missing_stops_the_start_with_its_name(tmp_path: Path) -> None:
    from gateway.telemetry import TelemetryError

    try:
        import opentelemetry.exporter.otlp.proto.grpc  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("the gRPC exporter is installed here")
    settings = make_settings(
        tmp_path, otel_exporter_otlp_endpoint="http://127.0.0.1:4317", otel_exporter_otlp_protocol="grpc"
    )
    with pytest.raises(TelemetryError, match="opentelemetry-exporter-otlp-proto-grpc"):
        create_app(settings)
