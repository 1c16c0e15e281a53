"""`WEB_CONCURRENCY=2`: a real `python -m gateway` supervisor with two workers on one port.

Which worker serves a connection is read from outside, in /proc: the established socket whose peer is the
client's port belongs to exactly one worker's file descriptors. Both workers serve; SIGTERM drains both and the
supervisor exits 0; a worker killed with SIGKILL is replaced, and the streams it had spooled during a database
outage land in the ledger exactly once, replayed by its replacement.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.settings import Settings
from gateway.stores.sqlite import SQLiteStore
from gateway.workers import _cgroup_cpus, usable_cores, worker_count
from sessions.ledger import LedgerWriter, Spool
from sessions.spool_slots import SpoolSlots, spool_name
from tests.conftest import service_unavailable
from tests.support import pg
from tests.support.clients import SSEEvent, iter_sse, user_msg
from tests.support.process import start_gateway
from tests.support.proxy import TcpProxy, via_local_port
from tests.support.records import new_user, record
from tests.support.server import free_port
from tests.test_ledger import count_rows, run_streams, wait_for

T0 = datetime(2031, 2, 3, 4, 5, 6, tzinfo=UTC)


# -- who serves what, from /proc ---------------------------------------------------------------------------------


def worker_pids(supervisor: int) -> dict[int, int]:
    """The supervisor's live workers: pid -> worker index (from their command lines)."""
    out: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        state, ppid = stat.rpartition(")")[2].split()[:2]
        if int(ppid) == supervisor and state != "Z" and b"--worker-index" in argv:
            out[int(entry)] = int(argv[argv.index(b"--worker-index") + 1])
    return out


def tcp_sockets(port: int) -> list[tuple[int, int, str]]:
    """(remote port, inode, state) of every loopback TCP socket whose local port is `port`."""
    rows = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if int(f[1].rsplit(":", 1)[1], 16) == port:
                rows.append((int(f[2].rsplit(":", 1)[1], 16), int(f[9]), f[3]))
    return rows


def listeners(port: int) -> int:
    return sum(1 for _, _, state in tcp_sockets(port) if state == "0A")


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    with_fds = Path(f"/proc/{pid}/fd")
    for fd in os.listdir(with_fds):
        try:
            target = os.readlink(with_fds / fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def owner_of(server_port: int, client_port: int, workers: dict[int, int]) -> int | None:
    """The worker pid holding the server side of the connection from `client_port`, once it has accepted it."""
    inodes = {inode for remote, inode, state in tcp_sockets(server_port) if remote == client_port and state == "01"}
    for pid in workers:
        if inodes & socket_inodes(pid):
            return pid
    return None


async def wait_until(predicate: Any, timeout: float = 30.0) -> Any:
    async with asyncio.timeout(timeout):
        while not (value := predicate()):
            await asyncio.sleep(0.02)
    return value


async def owners_of_fresh_connections(port: int, workers: dict[int, int], n: int) -> list[int]:
    """Open `n` connections, ask each for /readyz and note which worker answered it."""
    owners = []
    for _ in range(n):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET /readyz HTTP/1.1\r\nhost: gateway\r\n\r\n")
            await writer.drain()
            assert (await reader.readline()).startswith(b"HTTP/1.1 200")
            client_port = writer.get_extra_info("sockname")[1]
            owners.append(await wait_until(lambda cp=client_port: owner_of(port, cp, workers), 5))
        finally:
            writer.close()
    return owners


async def two_workers_listening(proc: asyncio.subprocess.Process, port: int) -> dict[int, int]:
    workers: dict[int, int] = await wait_until(lambda: len(worker_pids(proc.pid)) == 2 and worker_pids(proc.pid), 60)
    await wait_until(lambda: listeners(port) == 2, 60)
    return workers


# -- how many ----------------------------------------------------------------------------------------------------


def test_worker_count_defaults() -> None:
    def settings(**kw: Any) -> Settings:
        return Settings(_env_file=None, **kw)  # type: ignore[call-arg]

    prod = {
        "gateway_env": "production",
        "supabase_url": "https://ref.supabase.co",
        "gateway_encryption_keys": "k1:" + "A" * 43 + "=",
    }
    assert worker_count(settings(), cores=4) == 1  # development
    assert worker_count(settings(web_concurrency=3), cores=4) == 3
    assert worker_count(settings(**prod), cores=4) == 1  # no Redis: tickets and resumes must stay on one process
    assert worker_count(settings(**prod, redis_url="redis://127.0.0.1:6379/0"), cores=4) == 4
    assert worker_count(settings(**prod, redis_url="redis://127.0.0.1:6379/0"), cores=32) == 8
    assert worker_count(settings(**prod, web_concurrency=2), cores=32) == 2


# -- spool slots ---------------------------------------------------------------------------------------------------


async def test_a_live_spool_is_never_taken_and_orphans_are_replayed_once(tmp_path: Path) -> None:
    user = new_user()
    batches = {
        name: [record(f"st_{name.split('.')[0]}_{i}", user, T0 + timedelta(seconds=i)) for i in range(5)]
        for name in ("ledger-spool.jsonl", "ledger-spool-w5.jsonl", "ledger-spool-w1.jsonl")
    }
    held = SpoolSlots(tmp_path, spool_name(1))
    assert held.claim() == tmp_path / "ledger-spool-w1.jsonl"
    for name, recs in batches.items():
        Spool(tmp_path / name).append(recs)
    # A second claimer of a held slot gets a spare rather than writing into a live process's spool.
    rival = SpoolSlots(tmp_path, spool_name(1))
    assert rival.claim() == tmp_path / "ledger-spool-w1-x1.jsonl"
    rival.release()

    store = SQLiteStore(tmp_path / "gateway.sqlite3")
    await store.open()
    try:
        ledger = LedgerWriter(store, slots=SpoolSlots(tmp_path, spool_name(0)), interval_s=0.05)
        ledger.start()
        await wait_for(lambda: ledger.backlog == 0)
        await ledger.aclose()
        ids = {r[0] for r in await store._fetch("select stream_id from stream_usage")}
        assert ids == {r.stream_id for n in ("ledger-spool.jsonl", "ledger-spool-w5.jsonl") for r in batches[n]}
        assert sorted(p.name for p in tmp_path.glob("*.jsonl")) == ["ledger-spool-w1.jsonl"]  # the held one

        held.release()  # its process is gone: the next start takes its spool over
        again = LedgerWriter(store, slots=SpoolSlots(tmp_path, spool_name(0)), interval_s=0.05)
        again.start()
        await wait_for(lambda: again.backlog == 0)
        await again.aclose()
        rows = await store._fetch("select stream_id, count(*) from stream_usage group by stream_id")
        assert len(rows) == 15 and all(r[1] == 1 for r in rows)
        assert not list(tmp_path.glob("*.jsonl"))
    finally:
        await store.aclose()


# -- two real workers -----------------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_both_workers_serve_and_sigterm_drains_both_then_exits_zero(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    proc, token, log_path = await start_gateway(data, port, WEB_CONCURRENCY="2", GATEWAY_DRAIN_DEADLINE_S="10")
    try:
        workers = await two_workers_listening(proc, port)
        assert sorted(workers.values()) == [0, 1]
        owners = await owners_of_fresh_connections(port, workers, 24)
        assert set(owners) == set(workers), owners  # both serve (all 24 on one: odds of 2**-23)

        # Streams running on both workers when the signal comes: each worker lets its own finish.
        async def stream(i: int, started: asyncio.Event, out: list[dict[str, Any]]) -> None:
            async with (
                httpx.AsyncClient(timeout=30) as client,
                client.stream(
                    "POST",
                    f"http://127.0.0.1:{port}/v1/chat/stream",
                    headers={"authorization": f"Bearer {token}"},
                    json={"model": "mock", "messages": user_msg(f"s{i} [[mock tokens=20 delay_ms=50]]")},
                ) as r,
            ):
                async for ev in iter_sse(r):
                    if isinstance(ev, SSEEvent):
                        out.append(ev.data)
                        started.set()

        flags = [asyncio.Event() for _ in range(8)]
        outs: list[list[dict[str, Any]]] = [[] for _ in range(8)]
        tasks = [asyncio.create_task(stream(i, flags[i], outs[i])) for i in range(8)]
        async with asyncio.timeout(20):
            for f in flags:
                await f.wait()
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await asyncio.gather(*tasks)
            code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    logs = log_path.read_text()
    assert code == 0, logs
    assert not worker_pids(proc.pid) and listeners(port) == 0
    assert logs.count("gateway.serving: drained") == 2, logs
    assert "resume across workers, limits and the breaker are per worker without REDIS_URL" in logs
    for out in outs:
        assert out[-1]["type"] == "done" and out[-1]["finish_reason"] == "stop", out[-1]
    with sqlite3.connect(data / "gateway.sqlite3") as db:
        rows = dict(db.execute("select stream_id, status from stream_usage").fetchall())
    assert {out[0]["stream_id"] for out in outs} <= set(rows) and set(rows.values()) == {"done"}


@pytest.fixture
async def database() -> AsyncIterator[str]:
    if not await pg.reachable():
        service_unavailable("PostgreSQL")
    async with pg.fresh_database("gw_workers") as dsn:
        yield dsn


def spooled_lines(data: Path) -> dict[str, int]:
    return {p.name: len(p.read_bytes().splitlines()) for p in data.glob("ledger-spool*.jsonl")}


@pytest.mark.slow
async def test_a_worker_killed_mid_stream_loses_no_billed_stream(database: str, tmp_path: Path) -> None:
    proxy = TcpProxy(*pg.address())
    await proxy.start()
    await proxy.set_down()
    port = free_port()
    data = tmp_path / "data"
    proc, token, log_path = await start_gateway(
        data,
        port,
        WEB_CONCURRENCY="2",
        GATEWAY_STORE="postgres",
        DATABASE_URL=via_local_port(database, proxy.port),
        GATEWAY_STARTS_PER_MINUTE="100000",
        GATEWAY_MAX_CONCURRENT_STREAMS="64",
        GATEWAY_DRAIN_DEADLINE_S="2",
    )
    try:
        workers = await two_workers_listening(proc, port)
        # Streams finished while the database is down: each worker spools its own.
        n = 40
        ids = await run_streams_on_fresh_connections(f"http://127.0.0.1:{port}", token, n)
        await wait_until(lambda: sum(spooled_lines(data).values()) == n)
        assert sorted(spooled_lines(data)) == ["ledger-spool-w0.jsonl", "ledger-spool-w1.jsonl"]

        # A long stream is running on some worker: that worker is killed outright.
        victim, cut = await kill_the_worker_of_a_live_stream(port, token, workers)
        index = workers[victim]
        replacement = await wait_until(
            lambda: next((p for p, i in worker_pids(proc.pid).items() if i == index and p != victim), None)
        )
        await wait_until(lambda: listeners(port) == 2)
        assert cut, "the client of the killed worker's stream saw its connection end"
        assert await count_rows(database, ids) == (0, 0, 0)

        # The database comes back: the replacement replays the dead worker's spool, the other worker its own.
        proxy.set_up()
        await wait_until(lambda: not spooled_lines(data), 60)
        assert await count_rows(database, ids) == (n, n, n)
        assert replacement in worker_pids(proc.pid)
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await proxy.stop()
    logs = log_path.read_text()
    assert code == 0, logs
    assert "worker exited unexpectedly; restarting" in logs and "exit_code=-9" in logs, logs
    assert await count_rows(database, ids) == (n, n, n)  # the shutdown flush wrote nothing twice


async def run_streams_on_fresh_connections(url: str, token: str, n: int) -> list[str]:
    """`run_streams`, but each stream on a connection of its own, so they spread over the workers."""
    ids: list[str] = []
    for chunk in range(0, n, 8):
        batch = await asyncio.gather(*(run_streams(url, token, 1) for _ in range(chunk, min(n, chunk + 8))))
        ids.extend(i for b in batch for i in b)
    return ids


async def kill_the_worker_of_a_live_stream(port: int, token: str, workers: dict[int, int]) -> tuple[int, bool]:
    """Start a long stream, SIGKILL the worker serving it once tokens flow; (its pid, whether the client's
    connection was cut)."""
    victim: int | None = None
    async with httpx.AsyncClient(timeout=30) as client:
        try:
            async with client.stream(
                "POST",
                f"http://127.0.0.1:{port}/v1/chat/stream",
                headers={"authorization": f"Bearer {token}"},
                json={"model": "mock", "messages": user_msg("long [[mock tokens=3000 delay_ms=20]]")},
            ) as r:
                stream = r.extensions["network_stream"]
                client_port = stream.get_extra_info("socket").getsockname()[1]
                async for ev in iter_sse(r):
                    if victim is None and isinstance(ev, SSEEvent) and ev.data["type"] == "delta":
                        victim = await wait_until(lambda: owner_of(port, client_port, workers), 5)
                        os.kill(victim, signal.SIGKILL)
        except (httpx.RemoteProtocolError, httpx.ReadError):
            assert victim is not None
            return victim, True
    assert victim is not None
    return victim, False


def test_a_containers_cpu_quota_bounds_the_cores(tmp_path: Path) -> None:
    quota = tmp_path / "cpu.max"
    quota.write_text("max 100000\n")
    assert _cgroup_cpus(quota) is None
    quota.write_text("50000 100000\n")  # half a core, as on a small instance: still one worker
    assert _cgroup_cpus(quota) == 1
    quota.write_text("250000 100000\n")
    assert _cgroup_cpus(quota) == 3
    assert _cgroup_cpus(tmp_path / "absent") is None
    assert 1 <= usable_cores() <= len(os.sched_getaffinity(0))


def test_renders_cpu_count_bounds_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RENDER_CPU_COUNT", "0.5")
    assert usable_cores() == 1
    monkeypatch.setenv("RENDER_CPU_COUNT", "not a number")
    assert usable_cores() >= 1


@pytest.mark.slow
async def test_workers_that_cannot_start_make_the_supervisor_give_up_with_status_1(tmp_path: Path) -> None:
    # The port is held by a socket without SO_REUSEPORT: every worker's bind fails at once.
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "REDIS_URL", "DATABASE_URL"))}
        env.update(
            PYTHONPATH=str(Path(__file__).resolve().parent.parent),
            GATEWAY_ENV="development",
            GATEWAY_DATA_DIR=str(tmp_path / "data"),
            WEB_CONCURRENCY="2",
        )
        log_path = tmp_path / "supervisor.log"
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            "--port",
            str(port),
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log_path.open("wb"),
        )
        try:
            code = await asyncio.wait_for(proc.wait(), 60)  # 0.5 + 0.5 + 1 + 2 + 4 s of backoff, then it stops
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    logs = log_path.read_text()
    assert code == 1, logs
    assert logs.count("worker exited unexpectedly; restarting") >= 8 and "worker keeps dying at start" in logs
