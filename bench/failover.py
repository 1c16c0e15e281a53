"""Failover overhead: the gateway's own time from detecting a failure to sending the next model's request, and
its own time aligning a continuation against the partial answer at the seam.

    python -m bench.failover              # 200 failovers per provider pair, prints a markdown table
    python -m bench.failover --n 20       # quicker
    python -m bench.failover --seam       # the seam's own time: partials of 200 to 20,000 characters

The router runs the real adapters (official SDKs) against the in-process emulator. The first model fails
after a few tokens (a mid-stream error event); the second continues the answer. Two figures per pair:

- `router`: failure detected -> continuation request handed to the adapter (`Segment.failover_ms`): the
  router's bookkeeping, billing of the failed attempt, events to the client and building the continuation.
- `to wire`: failure detected -> the emulator has the request: adds the SDK building and sending it over
  loopback, and the emulator reading it (all on the same event loop, so an upper bound).

The continuation in the pair table starts the answer over (a whole restart the seam must align and cut), so each
failover includes an aligned seam. `--seam` measures the seam alone: the CPU time `SeamAligner` spends on one
continuation, from its first token to its decision, summed over every token it was fed (the waits for the upstream
between tokens are not the gateway's time and are not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from typing import Any

from providers.anthropic import AnthropicProvider
from providers.backoff import Backoff
from providers.base import ChatRequest, Credential, Message
from providers.breaker import MemoryBreaker
from providers.catalog import Catalog
from providers.gemini import GeminiProvider
from providers.openai import OpenAIProvider
from providers.router import AllModelsFailed, Router, Segment, SegmentEnded
from providers.seam import SeamAligner
from tests.emulators import Emulator, Script, split_words

PAIRS = [
    ("gpt-5-mini", "claude-sonnet-4-5"),
    ("claude-sonnet-4-5", "gemini-2.5-flash"),
    ("gemini-2.5-flash", "gpt-5-mini"),
]


class Keys:
    async def credential(self, provider: str) -> Credential | None:
        return Credential("bench-key", source="operator")


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


async def measure(n: int) -> list[dict[str, Any]]:
    catalog = Catalog.build()
    rows: list[dict[str, Any]] = []
    async with Emulator() as emu:
        adapters: dict[str, Any] = {
            "openai": OpenAIProvider(base_url=emu.openai_base_url),
            "anthropic": AnthropicProvider(base_url=emu.anthropic_base_url),
            "gemini": GeminiProvider(base_url=emu.gemini_base_url),
        }
        router = Router(adapters, breaker=MemoryBreaker(min_requests=10**9), backoff=Backoff(max_retries=0))
        request = ChatRequest((Message("user", "Tell me about foxes."),), max_tokens=100)
        partial = ("Foxes", " are", " small", " omnivores")
        try:
            for first_id, second_id in PAIRS:
                chain = [catalog.resolve(first_id), catalog.resolve(second_id)]
                router_ms: list[float] = []
                wire_ms: list[float] = []
                for i in range(n + 5):
                    emu.reset()
                    emu.script(Script(text=(*partial, " that"), error_after=len(partial)), model=chain[0].upstream)
                    emu.script(Script(echo="whole", text=(" that", " live", " everywhere.")), model=chain[1].upstream)
                    segs: list[Segment] = []
                    try:
                        async for ev in router.stream(request, chain, Keys()):
                            if isinstance(ev, SegmentEnded):
                                segs.append(ev.segment)
                    except AllModelsFailed as exc:
                        raise SystemExit(f"{first_id} -> {second_id}: {exc}") from None
                    if i < 5:  # warm-up: connection pools, imports, price lookups
                        continue
                    failed, took_over = segs[0], segs[1]
                    assert took_over.failover_ms is not None and failed.failed_at is not None
                    router_ms.append(took_over.failover_ms)
                    rec = next(r for r in emu.requests if r.model == chain[1].upstream)
                    wire_ms.append((rec.started - failed.failed_at) * 1000)
                rows.append(
                    {
                        "pair": f"{first_id} -> {second_id}",
                        "router_p50": statistics.median(router_ms),
                        "router_p99": pct(router_ms, 99),
                        "wire_p50": statistics.median(wire_ms),
                        "wire_p99": pct(wire_ms, 99),
                    }
                )
        finally:
            await asyncio.gather(*(p.aclose() for p in adapters.values()))
            # The SDKs leave their inner byte generators to the garbage collector; finalize them while the
            # loop still runs rather than in a heap at interpreter exit.
            gc.collect()
            await asyncio.sleep(0.05)
    return rows


SENTENCE = "Red foxes — small, clever omnivores — hunt at dusk and live in dens dug under roots. "


def seam_case(size: int, kind: str) -> tuple[str, list[str]]:
    """A partial answer of about `size` characters and a continuation, as word tokens."""
    partial = (SENTENCE * (size // len(SENTENCE) + 1))[:size].rsplit(" ", 1)[0]
    rest = " They raise four to six cubs a year."
    if kind == "whole restart":
        text = partial + rest
    elif kind == "restart from the middle":
        text = partial[len(partial) // 2 :].split(" ", 1)[1] + rest
    elif kind == "rewrite":
        text = partial[: len(partial) // 2] + " Foxes are canids, not cats."
    else:  # a plain continuation
        text = rest
    return partial, list(split_words(text))


def seam_times(n: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for size in (200, 2_000, 20_000):
        for kind in ("continuation", "whole restart", "restart from the middle", "rewrite"):
            partial, pieces = seam_case(size, kind)
            took: list[float] = []
            deciding: list[float] = []
            for _ in range(n):
                aligner = SeamAligner(partial)
                spent = last = 0.0
                for piece in pieces:
                    t = time.perf_counter()
                    aligner.feed(piece)
                    last = time.perf_counter() - t
                    spent += last
                    if aligner.done:
                        break
                if not aligner.done:
                    t = time.perf_counter()
                    aligner.flush()
                    last = time.perf_counter() - t
                    spent += last
                took.append(spent * 1000)
                deciding.append(last * 1000)
            rows.append(
                {
                    "size": size,
                    "kind": kind,
                    "tokens": len(pieces),
                    "p50": statistics.median(took),
                    "p99": pct(took, 99),
                    "decide_p50": statistics.median(deciding),
                    "decide_p99": pct(deciding, 99),
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=200, help="failovers per provider pair")
    parser.add_argument("--seam", action="store_true", help="measure the seam's own time instead")
    args = parser.parse_args()
    if args.seam:
        print(f"the seam's own time per continuation, {args.n} runs each (ms)\n")
        print("| partial | continuation | tokens | all tokens p50 | all tokens p99 | deciding token p50 | p99 |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for r in seam_times(args.n):
            cells = [f"{r[k]:.3f}" for k in ("p50", "p99", "decide_p50", "decide_p99")]
            print(f"| {r['size']:,} chars | {r['kind']} | {r['tokens']} | " + " | ".join(cells) + " |")
        return
    # Both clocks are time.monotonic: the emulator stamps requests with the loop's clock.
    assert abs(asyncio.new_event_loop().time() - time.monotonic()) < 1
    rows = asyncio.run(measure(args.n))
    print(f"failover overhead, {args.n} failovers per pair (ms)\n")
    print("| pair | router p50 | router p99 | to wire p50 | to wire p99 |")
    print("|---|---|---|---|---|")
    for r in rows:
        cells = [f"{r[k]:.3f}" for k in ("router_p50", "router_p99", "wire_p50", "wire_p99")]
        print(f"| {r['pair']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
