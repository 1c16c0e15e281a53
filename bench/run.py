"""One command for the whole benchmark: upstream emulator, gateway and load generator as separate processes.

    python -m bench.run              # full run, medians of 3, prints a markdown table
    python -m bench.run --quick      # smoke run (CI): small counts, one run, checks every path works

Figures: tokens/s, TTFT p50/p99 (direct vs through the gateway), the gateway's CPU time per streamed token
(utime+stime from /proc/<pid>/stat), and its RSS (VmRSS from /proc/<pid>/status).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PATHS = {"openai": "gateway-openai", "sse": "gateway-sse", "ws": "gateway-ws", "wsb": "gateway-ws-batch"}
BENCH_MODELS = [
    {
        "id": "bench",
        "provider": "openai",
        "upstream": "bench",
        "fallbacks": ["bench-b"],
        "supports_prefill": False,
        "price": {"input": 1, "output": 2},
    },
    {"id": "bench-b", "provider": "openai", "upstream": "bench-b", "price": {"input": 1, "output": 2}},
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def family(pid: int) -> list[int]:
    """The gateway process and its direct children (the workers, under WEB_CONCURRENCY's supervisor)."""
    out = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                out.append(int(entry))
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of the gateway, summed over its workers when it has several."""
    total = 0.0
    for p in family(pid):
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def rss_mb(pid: int) -> float:
    """VmRSS of the gateway, summed over its workers (and their supervisor) when it has several."""
    total = 0.0
    for p in family(pid):
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
    return total


def listening(port: int) -> int:
    """Sockets listening on `port` (one per worker: they all bind it with SO_REUSEPORT)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            count += int(f[1].rsplit(":", 1)[1], 16) == port and f[3] == "0A"
    return count


def raise_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))


def wait_http(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


@dataclass
class Procs:
    upstream_url: str
    gateway_url: str
    gateway_pid: int
    token: str
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)


def gateway_command(port: int, server: str, workers: int) -> list[str]:
    if server == "uvicorn":
        return [sys.executable, "-m", "gateway", "--port", str(port)]
    # granian: the same app (bench.granian_app), its Rust HTTP server in front, uvloop as with uvicorn.
    return [
        *(sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--loop", "uvloop"),
        *("--host", "127.0.0.1", "--port", str(port), "--workers", str(workers), "--log-level", "warning"),
        *("--no-access-log", "--backlog", "4096", "bench.granian_app:app"),
    ]


@contextmanager
def processes(log_dir: Path, workers: int = 1, server: str = "uvicorn") -> Iterator[Procs]:
    up_port, gw_port = free_port(), free_port()
    up = subprocess.Popen(
        [sys.executable, "-m", "bench.upstream", "--port", str(up_port)],
        cwd=ROOT,
        stdout=(log_dir / "upstream.log").open("wb"),
        stderr=subprocess.STDOUT,
        preexec_fn=raise_nofile,
    )
    data_dir = Path(tempfile.mkdtemp(prefix="gw-bench-"))
    env = {
        **os.environ,
        "GATEWAY_ENV": "development",
        "GATEWAY_DATA_DIR": str(data_dir),
        "LOG_LEVEL": "WARNING",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{up_port}/v1",
        "OPENAI_API_KEY": "bench-key",
        "GATEWAY_ALLOW_OPERATOR_KEYS": "true",
        "GATEWAY_MODELS": json.dumps(BENCH_MODELS),
        "GATEWAY_MAX_CONCURRENT_STREAMS": "100000",
        "GATEWAY_STARTS_PER_MINUTE": "100000000",
        "GATEWAY_WS_MESSAGES_PER_SECOND": "100000",
        "GATEWAY_RESUME_WINDOW_S": "0",
        # (e) measures the failover itself: keep the breaker from skipping the failing model.
        "GATEWAY_BREAKER_MIN_REQUESTS": "1000000",
        "WEB_CONCURRENCY": str(workers),
    }
    gw = subprocess.Popen(
        gateway_command(gw_port, server, workers),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=(log_dir / "gateway.log").open("wb"),
        preexec_fn=raise_nofile,
    )
    procs = Procs(f"http://127.0.0.1:{up_port}", f"http://127.0.0.1:{gw_port}", gw.pid, "", [up, gw])
    try:
        assert gw.stdout is not None
        lines = [gw.stdout.readline().decode().strip() for _ in range(3)]
        procs.token = lines[2]
        threading.Thread(target=gw.stdout.read, daemon=True).start()  # keep the pipe drained
        wait_http(procs.gateway_url + "/healthz")
        wait_http(procs.upstream_url + "/stats")
        deadline = time.monotonic() + 30
        while listening(gw_port) < workers:  # every worker bound: connections spread over them all
            if time.monotonic() > deadline:
                raise RuntimeError(f"{workers} gateway workers did not all start")
            time.sleep(0.05)
        yield procs
    finally:
        for p in procs.children:
            p.send_signal(signal.SIGTERM)
        for p in procs.children:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


def loadgen(*args: str, timeout: float = 300) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.loadgen", *args],
        cwd=ROOT,
        capture_output=True,
        timeout=timeout,
        check=True,
        preexec_fn=raise_nofile,
    )
    result: dict[str, Any] = json.loads(out.stdout.decode().strip().splitlines()[-1])
    return result


@dataclass
class Setting:
    name: str
    title: str
    streams: int
    concurrency: int
    tokens: int
    delay_ms: float
    rate: float = 0.0  # streams started per second; 0 starts them all at once
    workers: int = 1  # the gateway's WEB_CONCURRENCY


def measure(procs: Procs, path: str, s: Setting, extra: str = "", fallbacks: str = "") -> dict[str, Any]:
    """One load run; for gateway paths, the gateway's CPU and peak RSS during it."""
    direct = path == "direct"
    url = procs.upstream_url if direct else procs.gateway_url
    mode = "direct" if direct else PATHS[path]
    args = [
        "--mode",
        mode,
        "--url",
        url,
        "--token",
        procs.token,
        "--streams",
        str(s.streams),
        "--concurrency",
        str(s.concurrency),
        "--tokens",
        str(s.tokens),
        "--delay-ms",
        str(s.delay_ms),
        "--rate",
        str(s.rate),
        "--extra",
        extra,
        "--fallbacks",
        fallbacks,
    ]
    peak = [rss_mb(procs.gateway_pid)]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.1):
            peak.append(rss_mb(procs.gateway_pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    cpu0 = cpu_seconds(procs.gateway_pid)
    result = loadgen(*args)
    cpu1 = cpu_seconds(procs.gateway_pid)
    stop.set()
    sampler.join()
    if not direct:
        tokens = max(1, result["tokens"])
        result["cpu_us_per_token"] = round((cpu1 - cpu0) * 1e6 / tokens, 2)
        result["rss_peak_mb"] = round(max(peak), 1)
    return result


# (s): stream starts per second, stepped up until the first-token p99 passes the bound or a stream fails.
START_RATES = (25, 50, 100, 200, 400, 800, 1600)
START_P99_MS = 50.0
START_SECONDS = 3.0
START_TOKENS = 8


def starts(procs: Procs, path: str, quick: bool) -> dict[str, Any]:
    """The highest start rate (streams/s, each short) one process takes with every stream answered and TTFT p99
    under the bound; for gateway paths also its CPU per stream (a start plus eight tokens), at that rate."""
    best: dict[str, Any] = {"starts_per_s": 0.0, "ttft_p99_ms": 0.0, "cpu_ms_per_stream": 0.0}
    for rate in START_RATES[:2] if quick else START_RATES:
        count = max(10, int(rate * (0.5 if quick else START_SECONDS)))
        # Concurrency is left unbounded: the rate, not a pool, decides when each stream starts.
        s = Setting("s", "starts", count, count, START_TOKENS, 0.0, rate=float(rate))
        r = measure(procs, path, s)
        achieved = r["streams"] / r["wall_s"] if r["wall_s"] else 0.0
        ok = r["errors"] == 0 and r["streams"] == count and r["ttft_p99_ms"] < START_P99_MS
        if not ok or achieved < rate * 0.9:
            break
        best = {"starts_per_s": float(rate), "ttft_p99_ms": r["ttft_p99_ms"], "ttft_p50_ms": r["ttft_p50_ms"]}
        if "cpu_us_per_token" in r:
            best["cpu_ms_per_stream"] = round(r["cpu_us_per_token"] * r["tokens"] / count / 1000, 3)
    return best


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k in runs[0] if isinstance(runs[0][k], int | float)]
    return {k: round(statistics.median(r[k] for r in runs), 3) for k in keys}


def idle_connections(procs: Procs, count: int) -> dict[str, Any]:
    before = rss_mb(procs.gateway_pid)
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.loadgen",
            "--mode",
            "idle-ws",
            "--url",
            procs.gateway_url,
            "--token",
            procs.token,
            "--streams",
            str(count),
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        preexec_fn=raise_nofile,
    )
    assert p.stdout is not None and p.stdin is not None
    opened = json.loads(p.stdout.readline())
    time.sleep(1.0)
    after = rss_mb(procs.gateway_pid)
    p.stdin.close()
    p.wait(60)
    per_conn_kb = (after - before) * 1024 / max(1, opened["open"])
    return {
        "open": opened["open"],
        "failed": opened["failed"],
        "rss_before_mb": round(before, 1),
        "rss_after_mb": round(after, 1),
        "kb_per_connection": round(per_conn_kb, 2),
    }


def failover(procs: Procs, path: str, runs: int) -> dict[str, Any]:
    """Upstream-observed gap between dropping the first model's connection and the continuation request."""
    s = Setting("e", "failover", runs, 1, 64, 0.0)
    stats0 = httpx.get(procs.upstream_url + "/stats").json()
    result = measure(procs, path, s, extra=" fail_after=32 only=bench", fallbacks="bench-b")
    stats = httpx.get(procs.upstream_url + "/stats").json()
    drops = stats["drops"][len(stats0["drops"]) :]
    arrivals = stats["arrivals"][len(stats0["arrivals"]) :]
    gaps = []
    for d in drops:
        nxt = [a for a in arrivals if a > d]
        if nxt:
            gaps.append((min(nxt) - d) / 1e6)
    result["failover_gap_p50_ms"] = round(statistics.median(gaps), 3) if gaps else -1.0
    result["failover_gap_max_ms"] = round(max(gaps), 3) if gaps else -1.0
    own = gateway_failover_ms(procs, path, runs)
    result["gateway_failover_p50_ms"] = round(statistics.median(own), 3) if own else -1.0
    result["gateway_failover_max_ms"] = round(max(own), 3) if own else -1.0
    result["tokens_expected"] = runs * 64
    return result


def gateway_failover_ms(procs: Procs, path: str, runs: int) -> list[float]:
    """The gateway's own failover time (failure detected -> continuation sent), from its usage events."""
    import re

    if path == "openai":
        return []
    out: list[float] = []
    headers = {"authorization": f"Bearer {procs.token}"}
    body = {
        "model": "bench",
        "fallbacks": ["bench-b"],
        "messages": [{"role": "user", "content": "[[bench tokens=64 fail_after=32 only=bench]]"}],
    }
    with httpx.Client(base_url=procs.gateway_url, timeout=30) as client:
        for _ in range(runs):
            text = client.post("/v1/chat/stream", headers=headers, json=body).text
            out += [float(v) for v in re.findall(r'"failover_ms":([0-9.]+)', text)]
    return out


def settings_for(quick: bool) -> list[Setting]:
    """The streaming settings (a, b, c, c2, f); --quick makes them small."""
    return [
        Setting("a", "1 stream at a time, 256 tokens, no delay", 20 if quick else 200, 1, 256, 0.0),
        Setting("b", "50 concurrent, 256 tokens, no delay", 50 if quick else 1000, 50, 256, 0.0),
        Setting(
            "c",
            "200 concurrent, 256 tokens 20 ms apart",
            20 if quick else 200,
            20 if quick else 200,
            16 if quick else 256,
            20.0,
        ),
        # The same 200 streams in flight, reached the way traffic reaches a server: a stream lasts ~5.1 s, so
        # 39 starts a second hold 200 concurrent. (c) is the worst case of this: every start in one instant.
        Setting(
            "c2",
            "200 concurrent at steady arrivals (39 starts/s), 256 tokens 20 ms apart",
            20 if quick else 600,
            200,
            16 if quick else 256,
            20.0,
            rate=200 if quick else 39.0,
        ),
        # (c2) against a gateway of two worker processes on the one port (WEB_CONCURRENCY=2).
        Setting(
            "f",
            "(c2) with two workers (WEB_CONCURRENCY=2)",
            20 if quick else 600,
            200,
            16 if quick else 256,
            20.0,
            rate=200 if quick else 39.0,
            workers=2,
        ),
    ]


def run(args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    settings = settings_for(quick)
    wanted = set(args.settings.split(","))
    paths = [p for p in args.paths.split(",") if p]
    report: dict[str, Any] = {"runs": args.runs, "quick": quick, "results": {}}
    log_dir = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    # A fresh gateway for each setting and path: one run's memory high-water mark never counts for another.
    for s in settings:
        if s.name not in wanted:
            continue
        row: dict[str, Any] = {"title": s.title}
        for path in ["direct", *paths]:
            with processes(log_dir, s.workers, args.server) as procs:
                measure(procs, path, Setting("w", "warm", 5, 5, 16, 0.0))
                row[path] = median_of([measure(procs, path, s) for _ in range(args.runs)])
        report["results"][s.name] = row
        print(f"setting {s.name} done", file=sys.stderr, flush=True)
    if "d" in wanted:
        count = 200 if quick else args.idle
        runs = []
        for _ in range(args.runs):
            with processes(log_dir) as procs:
                measure(procs, "ws", Setting("w", "warm", 5, 5, 16, 0.0))
                runs.append(idle_connections(procs, count))
        report["results"]["d"] = {"title": f"{count} idle authenticated WebSockets", "ws": median_of(runs)}
    if "s" in wanted:
        row = {"title": f"stream starts per second with TTFT p99 < {START_P99_MS:.0f} ms ({START_TOKENS} tokens each)"}
        for path in ["direct", *paths]:
            with processes(log_dir) as procs:
                measure(procs, path, Setting("w", "warm", 5, 5, 16, 0.0))
                row[path] = median_of([starts(procs, path, quick) for _ in range(args.runs)])
        report["results"]["s"] = row
    if "e" in wanted:
        row = {"title": "mid-stream failover"}
        for path in paths:
            with processes(log_dir) as procs:
                measure(procs, path, Setting("w", "warm", 5, 5, 16, 0.0))
                row[path] = median_of([failover(procs, path, 5 if quick else 20) for _ in range(args.runs)])
        report["results"]["e"] = row
    return report


def table(report: dict[str, Any]) -> str:
    out = [
        "| setting | path | tokens/s | vs direct | TTFT p50 ms | TTFT p99 ms | +TTFT p50 ms | +TTFT p99 ms "
        "| CPU µs/token | peak RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ("a", "b", "c", "c2", "f"):
        row = report["results"].get(name)
        if not row:
            continue
        d = row["direct"]
        for path, r in row.items():
            if path == "title":
                continue
            ratio = f"{r['tokens_per_s'] / d['tokens_per_s'] * 100:.1f}%" if d["tokens_per_s"] else "-"
            extra = f"{r['ttft_p50_ms'] - d['ttft_p50_ms']:+.2f}" if path != "direct" else ""
            extra99 = f"{r['ttft_p99_ms'] - d['ttft_p99_ms']:+.2f}" if path != "direct" else ""
            out.append(
                f"| ({name}) | {path} | {r['tokens_per_s']:.0f} | {ratio} | {r['ttft_p50_ms']:.2f} "
                f"| {r['ttft_p99_ms']:.2f} | {extra} | {extra99} "
                f"| {r.get('cpu_us_per_token', '')} | {r.get('rss_peak_mb', '')} |"
            )
    d = report["results"].get("d")
    if d:
        w = d["ws"]
        out.append(
            f"\n(d) {d['title']}: {w['open']:.0f} open, {w['kb_per_connection']} KB per connection "
            f"(RSS {w['rss_before_mb']} -> {w['rss_after_mb']} MB)"
        )
    s = report["results"].get("s")
    if s:
        for path, r in s.items():
            if path == "title":
                continue
            cpu = f", {r['cpu_ms_per_stream']} ms CPU per stream" if path != "direct" else ""
            out.append(
                f"(s) {path}: {r['starts_per_s']:.0f} starts/s with TTFT p99 {r['ttft_p99_ms']} ms"
                f" (p50 {r.get('ttft_p50_ms', 0)} ms){cpu}"
            )
    e = report["results"].get("e")
    if e:
        for path, r in e.items():
            if path == "title":
                continue
            own = (
                f"gateway's own time p50 {r['gateway_failover_p50_ms']} ms, max {r['gateway_failover_max_ms']} ms; "
                if r["gateway_failover_p50_ms"] >= 0
                else ""
            )
            out.append(
                f"(e) failover via {path}: {own}upstream sees drop -> continuation request p50 "
                f"{r['failover_gap_p50_ms']} ms, max {r['failover_gap_max_ms']} ms"
            )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke mode for CI: small counts, one run")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--settings", default="a,b,c,c2,d,e,f,s")
    p.add_argument("--paths", default="openai,sse,ws,wsb", help="wsb: the WebSocket with ?batch=1")
    p.add_argument("--idle", type=int, default=10_000, help="idle WebSockets for setting (d)")
    p.add_argument("--json", type=Path, help="also write the raw figures here")
    p.add_argument("--server", choices=("uvicorn", "granian"), default="uvicorn", help="what serves the gateway's app")
    args = p.parse_args(argv)
    if args.quick:
        args.runs = 1
    report = run(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    print(table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
