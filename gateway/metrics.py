"""Prometheus metrics, counted per finished stream (never per token) and rendered as text on scrape."""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal

from sessions.ports import LedgerSink
from sessions.records import StreamRecord

TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

Labels = tuple[tuple[str, str], ...]


def _fmt(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"' for k, v in labels)
    return "{" + inner + "}"


Gauge = tuple[str, Callable[[], float]]  # help text, how to read it


class Metrics:
    def __init__(self, gauges: dict[str, Gauge] | None = None) -> None:
        self.streams: dict[Labels, int] = defaultdict(int)
        self.tokens: dict[Labels, int] = defaultdict(int)
        self.cost: dict[Labels, Decimal] = defaultdict(Decimal)
        self.fallbacks: dict[Labels, int] = defaultdict(int)
        self.upstream_errors: dict[Labels, int] = defaultdict(int)
        self.ttft_counts = [0] * (len(TTFT_BUCKETS) + 1)
        self.ttft_sum = 0.0
        self.gauges: dict[str, Gauge] = dict(gauges or {})

    def observe(self, rec: StreamRecord) -> None:
        self.streams[(("status", rec.status), ("model", rec.requested_model))] += 1
        for i, seg in enumerate(rec.segments):
            pm = (("provider", seg.provider), ("model", seg.model))
            self.tokens[(*pm, ("kind", "input"))] += seg.usage.input_tokens
            self.tokens[(*pm, ("kind", "output"))] += seg.usage.output_tokens
            self.cost[pm] += seg.cost_usd
            if seg.status == "failed":
                self.upstream_errors[(*pm, ("reason", seg.reason or "unknown"))] += 1
                if i + 1 < len(rec.segments):
                    self.fallbacks[(("reason", seg.reason or "unknown"),)] += 1
        if rec.ttft_ms is not None:
            seconds = rec.ttft_ms / 1000
            self.ttft_counts[bisect.bisect_left(TTFT_BUCKETS, seconds)] += 1
            self.ttft_sum += seconds

    def render(self) -> str:
        out: list[str] = []

        def counter(name: str, help_text: str, values: dict[Labels, int] | dict[Labels, Decimal]) -> None:
            out.append(f"# HELP {name} {help_text}\n# TYPE {name} counter")
            out.extend(f"{name}{_fmt(labels)} {value}" for labels, value in sorted(values.items()))

        counter("gateway_streams_total", "Finished streams by status and requested model.", self.streams)
        counter("gateway_tokens_total", "Tokens by provider, model and kind (input/output).", self.tokens)
        counter("gateway_cost_usd_total", "Cost in USD by provider and model.", self.cost)
        counter("gateway_failovers_total", "Moves to the next model, by the failure reason.", self.fallbacks)
        counter("gateway_upstream_errors_total", "Failed attempts by provider, model and reason.", self.upstream_errors)
        out.append("# HELP gateway_ttft_seconds Time to first token per stream.\n# TYPE gateway_ttft_seconds histogram")
        running = 0
        for bound, count in zip((*TTFT_BUCKETS, float("inf")), self.ttft_counts, strict=True):
            running += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            out.append(f'gateway_ttft_seconds_bucket{{le="{le}"}} {running}')
        out.append(f"gateway_ttft_seconds_sum {self.ttft_sum}\ngateway_ttft_seconds_count {running}")
        for name, (help_text, read) in sorted(self.gauges.items()):
            out.append(f"# HELP {name} {help_text}\n# TYPE {name} gauge\n{name} {read()}")
        return "\n".join(out) + "\n"


class MeteredLedger:
    """A ledger sink that counts each finished stream into the metrics, then hands it on."""

    def __init__(self, inner: LedgerSink, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics

    def submit(self, record: StreamRecord) -> None:
        self._metrics.observe(record)
        self._inner.submit(record)
