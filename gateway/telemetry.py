"""OpenTelemetry traces: one span per stream, one child span per attempt on a model, with the GenAI semantic
conventions; a fallback is an event on the stream's span.

Spans start and end at stream and attempt boundaries only (`sessions.observer`), built from what the stream
already holds: nothing on the per-token path. Without `OTEL_EXPORTER_OTLP_ENDPOINT` none of this is built and the
SDK is never imported. The tracer provider is built here and handed to the observer; the global one is left alone.

Names follow the GenAI conventions (`gen_ai.*`, `error.type`); what they have no name for is under `gateway.*`
(the stream's id and status, its cost, the fallback's details, an attempt's segment number and retry).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider
from opentelemetry.util.types import AttributeValue

from gateway.settings import Settings, SettingsError
from providers.router import AttemptStarted, FallbackStarted
from providers.segments import Segment
from sessions.observer import StreamStart
from sessions.records import StreamRecord

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

SERVICE_NAME = "agent-gateway"
OPERATION = "chat"
# The conventions' names for the providers the gateway speaks to; another (a compatible server) goes by its own.
PROVIDER_NAMES = {"openai": "openai", "anthropic": "anthropic", "gemini": "gcp.gemini"}

Attributes = dict[str, AttributeValue]


class TelemetryError(SettingsError):
    """The OpenTelemetry settings ask for something this gateway cannot do."""


def provider_name(provider: str) -> str:
    return PROVIDER_NAMES.get(provider, provider)


def _provider(provider: str) -> Attributes:
    # `gen_ai.system` is the name conventions before 1.37 gave it; older backends still group by it.
    name = provider_name(provider)
    return {"gen_ai.provider.name": name, "gen_ai.system": name}


def _usage(segments: list[Segment]) -> Attributes:
    return {
        "gen_ai.usage.input_tokens": sum(s.usage.input_tokens for s in segments),
        "gen_ai.usage.output_tokens": sum(s.usage.output_tokens for s in segments),
        "gen_ai.usage.cache_read.input_tokens": sum(s.usage.cached_input_tokens for s in segments),
        "gen_ai.usage.reasoning.output_tokens": sum(s.usage.reasoning_tokens for s in segments),
        "gateway.cost_usd": float(sum(s.cost_usd for s in segments)),
        "gateway.cost_estimated": any(s.estimated for s in segments),
    }


def _request(start: StreamStart) -> Attributes:
    r = start.request
    attrs: Attributes = {"gen_ai.operation.name": OPERATION, "gen_ai.request.stream": True}
    if r.max_tokens is not None:
        attrs["gen_ai.request.max_tokens"] = r.max_tokens
    if r.temperature is not None:
        attrs["gen_ai.request.temperature"] = r.temperature
    if r.stop:
        attrs["gen_ai.request.stop_sequences"] = list(r.stop)
    return attrs


class StreamSpans:
    """The spans of one stream. The attempt that ended last stays open until the stream's end says why it
    finished; it is ended then at its own end time."""

    __slots__ = ("_attempt", "_ended_attempt", "_request", "_span", "_tracer", "_upstream")

    def __init__(self, tracer: Tracer, start: StreamStart) -> None:
        first = start.chain[0]
        self._tracer = tracer
        self._request = _request(start)
        attrs: Attributes = {
            **self._request,
            **_provider(first.provider),
            "gen_ai.request.model": first.id,
            "gateway.stream.id": start.stream_id,
            "gateway.user.id": start.user_id,
            "gateway.midstream_policy": start.policy,
            "gateway.chain": [m.id for m in start.chain],
        }
        self._span = tracer.start_span(f"{OPERATION} {first.id}", kind=SpanKind.INTERNAL, attributes=attrs)
        self._attempt: Span | None = None
        self._upstream = ""
        self._ended_attempt: tuple[Span, Segment, int] | None = None

    def attempt(self, started: AttemptStarted) -> None:
        self._close_ended(None)
        spec = started.model
        self._upstream = spec.upstream
        attrs: Attributes = {
            **self._request,
            **_provider(spec.provider),
            "gen_ai.request.model": spec.upstream,
            "gateway.model": spec.id,
            "gateway.segment": started.segment,
            "gateway.attempt.retry": started.retry,
        }
        context = trace.set_span_in_context(self._span)
        self._attempt = self._tracer.start_span(
            f"{OPERATION} {spec.upstream}", context=context, kind=SpanKind.CLIENT, attributes=attrs
        )

    def fallback(self, fallback: FallbackStarted) -> None:
        self._span.add_event(
            "gateway.fallback",
            {
                "gateway.fallback.from": fallback.from_model,
                "gateway.fallback.to": fallback.to_model,
                "gateway.fallback.reason": fallback.reason,
                "gateway.fallback.mode": fallback.mode,
                "gateway.fallback.chars_so_far": fallback.chars_so_far,
            },
        )

    def segment(self, segment: Segment) -> None:
        span, self._attempt = self._attempt, None
        if span is None:
            return
        span.set_attributes({**_usage([segment]), "gateway.request.form": segment.form})
        if segment.ttft_ms is not None:
            span.set_attribute("gen_ai.response.time_to_first_chunk", segment.ttft_ms / 1000)
        if segment.failover_ms is not None:
            span.set_attribute("gateway.failover_ms", segment.failover_ms)
        if segment.status == "failed":
            reason = segment.reason or "failed"
            span.set_attributes({"error.type": reason, "gen_ai.response.finish_reasons": ["error"]})
            span.set_status(Status(StatusCode.ERROR, reason))
            span.end()
            return
        span.set_attribute("gen_ai.response.model", self._upstream)
        self._ended_attempt = (span, segment, time.time_ns())

    def _close_ended(self, finish_reason: str | None) -> None:
        if self._ended_attempt is None:
            return
        span, segment, at = self._ended_attempt
        self._ended_attempt = None
        if segment.status == "cancelled":
            span.set_attribute("gen_ai.response.finish_reasons", ["cancelled"])
        elif finish_reason is not None:
            span.set_attribute("gen_ai.response.finish_reasons", [finish_reason])
        span.end(end_time=at)

    def ended(self, record: StreamRecord) -> None:
        self._close_ended(record.finish_reason)
        if self._attempt is not None:  # left without an end of its own (the stream was torn down)
            self._attempt.set_attribute("gen_ai.response.finish_reasons", ["cancelled"])
            self._attempt.end()
            self._attempt = None
        span = self._span
        answered = [s for s in record.segments if s.status != "failed"]
        attrs: Attributes = {
            **_usage(record.segments),
            "gateway.stream.status": record.status,
            "gateway.fallbacks": max(0, len(record.segments) - 1),
        }
        if answered:
            attrs.update(_provider(answered[-1].provider))
            attrs["gen_ai.response.model"] = answered[-1].model
        if record.ttft_ms is not None:
            attrs["gen_ai.response.time_to_first_chunk"] = record.ttft_ms / 1000
        if record.finish_reason is not None:
            attrs["gen_ai.response.finish_reasons"] = [record.finish_reason]
        span.set_attributes(attrs)
        if record.error_code is not None:
            span.set_attribute("error.type", record.error_code)
            span.set_status(Status(StatusCode.ERROR, record.error_code))
        span.end()


class Tracing:
    """The `sessions.observer.StreamObserver` that makes the spans."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self._tracer = provider.get_tracer("gateway")

    def stream(self, start: StreamStart) -> StreamSpans:
        return StreamSpans(self._tracer, start)

    async def aclose(self) -> None:
        """Send what is still buffered (an SDK provider has `shutdown`; the API's has nothing to flush), on a
        thread: it waits for the collector."""
        shutdown = getattr(self.provider, "shutdown", None)
        if shutdown is not None:
            await asyncio.to_thread(shutdown)


# -- from the environment --------------------------------------------------------------------------------------


def tracing_from(settings: Settings) -> Tracing | None:
    """Tracing over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (and `OTEL_SDK_DISABLED` is not true); the SDK
    reads the other standard variables itself (headers, timeout, compression, sampler, batching, resource)."""
    endpoint = settings.otel_exporter_otlp_endpoint
    if not endpoint or os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create()  # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over the default name
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
    provider = SDKTracerProvider(resource=resource)
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "").strip() or settings.otel_exporter_otlp_protocol
    provider.add_span_processor(BatchSpanProcessor(_exporter(endpoint, protocol)))
    return Tracing(provider)


def _exporter(endpoint: str, protocol: str) -> SpanExporter:
    traces_endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or None
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # The generic endpoint is a base URL: the signal's path is added to it, as the SDK does.
        return OTLPSpanExporter(endpoint=traces_endpoint or endpoint.rstrip("/") + "/v1/traces")
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found]
                OTLPSpanExporter as GrpcSpanExporter,
            )
        except ImportError:
            raise TelemetryError(
                "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs `pip install opentelemetry-exporter-otlp-proto-grpc`"
            ) from None
        exporter: SpanExporter = GrpcSpanExporter(endpoint=traces_endpoint or endpoint)
        return exporter
    raise TelemetryError(f"OTEL_EXPORTER_OTLP_PROTOCOL {protocol!r} is not supported: use http/protobuf or grpc")
