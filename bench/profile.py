"""Where the gateway spends a token: `py-spy record` on one gateway process while a paced load streams through it.

    python -m bench.profile --face sse                 # flame graph in /tmp, top entries printed
    python -m bench.profile --face ws --native         # with native frames (C extensions, the interpreter)
    python -m bench.profile --tokens 1 --delay-ms 0 --streams 2000 --concurrency 4   # stream starts

Each token is its own upstream read (the upstream paces them `--delay-ms` apart). The top entries are by own
samples (`--top`), then the lines of our own modules by total samples. Needs `pip install py-spy`.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from bench.run import Setting, measure, processes


def top(raw: Path, n: int) -> tuple[list[tuple[str, int]], list[tuple[str, int]], int]:
    """(frames by own samples, our frames by total samples, all samples) from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    ours: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        k = int(count)
        total += k
        own[frames[-1]] += k
        for f in set(frames):
            if any(m in f for m in ("gateway/", "sessions/", "providers/")):
                ours[f] += k
    return own.most_common(n), ours.most_common(n), total


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--face", default="sse", choices=["openai", "sse", "ws", "wsb"])
    p.add_argument("--streams", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=0, help="streams at a time (0: all at once)")
    p.add_argument("--tokens", type=int, default=256)
    p.add_argument("--delay-ms", type=float, default=10.0)
    p.add_argument("--native", action="store_true")
    p.add_argument("--top", type=int, default=25)
    a = p.parse_args()
    out = Path(tempfile.mkdtemp(prefix="profile-"))
    with processes(out) as procs:
        measure(procs, a.face, Setting("w", "warm", 5, 5, 16, 0.0))
        raw = out / f"{a.face}.txt"
        cmd = ["py-spy", "record", "--pid", str(procs.gateway_pid), "--format", "raw", "-o", str(raw), "-r", "250"]
        cmd.append("--gil")  # only the thread running Python: not the idle worker threads
        spy = subprocess.Popen([*cmd, *(["--native"] if a.native else [])], stderr=subprocess.DEVNULL)
        load = threading.Thread(
            target=measure,
            args=(procs, a.face, Setting("p", "profile", a.streams, a.concurrency or a.streams, a.tokens, a.delay_ms)),
        )
        load.start()
        load.join()
        spy.send_signal(2)
        spy.wait(60)
    own, ours, total = top(raw, a.top)
    print(f"{a.face}: {total} samples; by own samples:")
    for f, k in own:
        print(f"  {k * 100 / total:5.1f}%  {f}")
    print("our frames, by total samples:")
    for f, k in ours:
        print(f"  {k * 100 / total:5.1f}%  {f}")
    print(f"raw stacks: {raw}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
