"""The benchmark command works end to end (a smoke run: it checks every path streams, not the speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_bench_quick_run_streams_on_every_path(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--settings", "a,d,e", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    a = report["results"]["a"]
    for path in ("direct", "openai", "sse", "ws"):
        assert a[path]["errors"] == 0, path
        assert a[path]["tokens"] == a[path]["streams"] * 256 > 0, path
    for path in ("openai", "sse", "ws"):
        assert a[path]["cpu_us_per_token"] > 0
    assert report["results"]["d"]["ws"]["open"] == 200
    for path in ("sse", "ws"):
        e = report["results"]["e"][path]
        assert e["errors"] == 0 and e["gateway_failover_p50_ms"] >= 0
    assert "| (a) | sse |" in proc.stdout
