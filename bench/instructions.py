"""Instructions per token and per stream start, for each face, counted by callgrind in one gateway process.

    python -m bench.instructions                       # every face, under valgrind (a few minutes)
    python -m bench.instructions --faces sse --streams 10
    python -m bench.instructions --cpu                 # the same loads, CPU µs from /proc (no valgrind)

The machine is shared and its speed varies, so wall-clock CPU is noisy; instruction counts are not. The gateway
runs as `python -m gateway` (as in `bench.run`) under `valgrind --tool=callgrind`; the upstream (`bench.upstream`)
and the load generator (`bench.loadgen`) run in their own processes, uncounted. For each face:

- starts: `--streams` one-token streams one after the other; instructions / streams is the cost of a stream
  start (auth, limits, budget, key, routing, the upstream request) plus one token and the end;
- tokens: as many streams of `--tokens` tokens, the upstream pacing them `--delay-ms` apart, so each token is
  its own upstream read; (that run - the starts run) / (streams x (tokens - 1)) is the cost of one token.

The event loop's idle work (uvicorn's timers) is measured alone for a few seconds and taken off both runs, in
proportion to their wall time. Counters are zeroed and dumped with `callgrind_control` between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench.run import BENCH_MODELS, PATHS, ROOT, cpu_seconds, free_port, raise_nofile, wait_http


@dataclass
class Gateway:
    url: str
    pid: int
    token: str
    dumps: Path | None  # callgrind's output directory (None: not under valgrind)


def _env(up_port: int, data_dir: str) -> dict[str, str]:
    return {
        **os.environ,
        "GATEWAY_ENV": "development",
        "GATEWAY_DATA_DIR": data_dir,
        "LOG_LEVEL": "WARNING",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{up_port}/v1",
        "OPENAI_API_KEY": "bench-key",
        "GATEWAY_ALLOW_OPERATOR_KEYS": "true",
        "GATEWAY_MODELS": json.dumps(BENCH_MODELS),
        "GATEWAY_MAX_CONCURRENT_STREAMS": "100000",
        "GATEWAY_STARTS_PER_MINUTE": "100000000",
        "GATEWAY_WS_MESSAGES_PER_SECOND": "100000",
        "GATEWAY_RESUME_WINDOW_S": "0",
    }


def start(up_port: int, valgrind: bool, log: Path) -> tuple[Gateway, subprocess.Popen[bytes]]:
    port = free_port()
    dumps = Path(tempfile.mkdtemp(prefix="callgrind-")) if valgrind else None
    cmd = [sys.executable, "-m", "gateway", "--port", str(port)]
    if dumps is not None:
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={dumps}/cg.%p", "--dump-line=no", *cmd]
    gw = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=_env(up_port, tempfile.mkdtemp(prefix="gw-instr-")),
        stdout=subprocess.PIPE,
        stderr=log.open("wb"),
        preexec_fn=raise_nofile,
    )
    assert gw.stdout is not None
    lines = [gw.stdout.readline().decode().strip() for _ in range(3)]
    threading.Thread(target=gw.stdout.read, daemon=True).start()
    wait_http(f"http://127.0.0.1:{port}/healthz", timeout=300)
    return Gateway(f"http://127.0.0.1:{port}", gw.pid, lines[2], dumps), gw


def _control(gw: Gateway, flag: str) -> None:
    subprocess.run(["callgrind_control", flag, str(gw.pid)], check=True, capture_output=True, timeout=120)


def dump(gw: Gateway) -> int:
    """Instructions since the last dump (callgrind zeroes its counters at each dump)."""
    assert gw.dumps is not None
    before = set(gw.dumps.iterdir())
    _control(gw, "-d")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        new = [p for p in set(gw.dumps.iterdir()) - before if not p.name.endswith(".tmp")]
        if new:
            time.sleep(0.2)  # let it finish writing
            m = re.search(rb"^(?:summary|totals): (\d+)", new[0].read_bytes(), re.M)
            if m:
                return int(m.group(1))
        time.sleep(0.1)
    raise RuntimeError("callgrind dump did not appear")


class Counter:
    """Instructions (valgrind) or CPU µs (/proc) since the last call."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.last = 0.0 if gw.dumps is not None else cpu_seconds(gw.pid) * 1e6

    def __call__(self) -> float:
        if self.gw.dumps is not None:
            return float(dump(self.gw))
        now = cpu_seconds(self.gw.pid) * 1e6
        spent, self.last = now - self.last, now
        return spent


def load(gw: Gateway, face: str, streams: int, tokens: int, delay_ms: float, concurrency: int) -> float:
    """Runs one load; returns its wall time. Fails loudly on any error or a short count."""
    args = [
        *("--mode", PATHS[face], "--url", gw.url, "--token", gw.token),
        *("--streams", str(streams), "--concurrency", str(concurrency), "--tokens", str(tokens)),
        *("--delay-ms", str(delay_ms), "--deadline-s", "900"),
    ]
    t0 = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "bench.loadgen", *args], cwd=ROOT, capture_output=True, timeout=1000, check=True
    )
    wall = time.monotonic() - t0
    res = json.loads(out.stdout.decode().strip().splitlines()[-1])
    if res["errors"] or res["tokens"] != streams * tokens:
        raise RuntimeError(f"{face}: {res}")
    return wall


def measure_face(gw: Gateway, face: str, a: argparse.Namespace) -> dict[str, float]:
    load(gw, face, 3, 4, 0, 1)  # warm: first-use imports, pools, connections
    counter = Counter(gw)
    counter()
    time.sleep(a.idle_s)
    idle_rate = counter() / a.idle_s
    w1 = load(gw, face, a.streams, 1, 0, 1)
    starts = counter() - idle_rate * w1
    wt = load(gw, face, a.streams, a.tokens, a.delay_ms, a.concurrency)
    toks = counter() - idle_rate * wt
    per_start = starts / a.streams
    per_token = (toks - starts) / (a.streams * (a.tokens - 1))
    return {"per_stream_start": round(per_start), "per_token": round(per_token), "idle_per_s": round(idle_rate)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--faces", default="openai,sse,ws")
    p.add_argument("--streams", type=int, default=12)
    p.add_argument("--tokens", type=int, default=48)
    p.add_argument("--delay-ms", type=float, default=25.0, help="upstream pace: one token per read")
    p.add_argument("--concurrency", type=int, default=6)
    p.add_argument("--idle-s", type=float, default=5.0)
    p.add_argument("--cpu", action="store_true", help="CPU µs from /proc instead of callgrind's instructions")
    a = p.parse_args()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-instr-"))
    up_port = free_port()
    up = subprocess.Popen(
        [sys.executable, "-m", "bench.upstream", "--port", str(up_port)],
        cwd=ROOT,
        stdout=(log_dir / "upstream.log").open("wb"),
        stderr=subprocess.STDOUT,
        preexec_fn=raise_nofile,
    )
    unit = "µs" if a.cpu else "instructions"
    results: dict[str, dict[str, float]] = {}
    try:
        wait_http(f"http://127.0.0.1:{up_port}/stats")
        for face in a.faces.split(","):
            gw, proc = start(up_port, not a.cpu, log_dir / f"gateway-{face}.log")
            try:
                results[face] = measure_face(gw, face, a)
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(120)
                except subprocess.TimeoutExpired:
                    proc.kill()
            r = results[face]
            print(
                f"{face:7s} per stream start {r['per_stream_start']:>12,.0f} {unit}   "
                f"per token {r['per_token']:>10,.0f} {unit}   (idle {r['idle_per_s']:,.0f}/s)",
                flush=True,
            )
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(30)
    print(json.dumps({"unit": unit, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
