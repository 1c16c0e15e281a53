"""Several worker processes on one port (`WEB_CONCURRENCY`), and the small supervisor that keeps them running.

Each worker is a whole gateway, started as `python -m gateway --worker-index i`: its own `create_app`, event
loop, ledger spool and graceful drain. Each binds the port itself with `SO_REUSEPORT` and the kernel spreads
new connections over the workers' listening sockets. That was chosen over one socket bound by the supervisor
and passed down because one shared accept queue lets whichever worker wakes first take a whole burst of
connections (long-lived streams then pile up on one core), while the kernel's per-socket hashing spreads them
evenly; the cost is that connections still queued (not yet accepted) on a worker that dies are reset, as they
would be with a single process. The supervisor binds nothing and imports no app: it forwards SIGTERM and
SIGINT, restarts a worker that exits without being told to (after a backoff that grows while workers keep
dying young), and exits once every worker has, with status 0 when they all drained cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import math
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.settings import Settings

log = logging.getLogger("gateway.workers")

DEFAULT_MAX_WORKERS = 8
FORWARDED = (signal.SIGTERM, signal.SIGINT)
YOUNG_S = 10.0  # a worker that dies sooner than this after its start counts towards giving up
GIVE_UP_AFTER = 5  # young deaths in a row of one worker: something is wrong with every start, stop it all
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
PER_WORKER_WITHOUT_REDIS = "resume across workers, limits and the breaker are per worker without REDIS_URL"


# -- how many ----------------------------------------------------------------------------------------------------


def _cgroup_cpus(path: Path = Path("/sys/fs/cgroup/cpu.max")) -> int | None:
    """The cgroup v2 CPU quota in whole cores (rounded up), or None when there is none."""
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def usable_cores() -> int:
    """The cores this process may run on: its affinity, bounded by a container's CPU quota (and by Render's
    `RENDER_CPU_COUNT`), since affinity alone shows the host's cores inside a container."""
    cores = len(os.sched_getaffinity(0))
    quota = _cgroup_cpus()
    if quota is not None:
        cores = min(cores, quota)
    render = os.environ.get("RENDER_CPU_COUNT")  # "0.5" on Render's Starter instances
    if render:
        with contextlib.suppress(ValueError, OverflowError):
            cores = min(cores, max(1, math.ceil(float(render))))
    return max(1, cores)


def worker_count(settings: Settings, cores: int | None = None) -> int:
    """`WEB_CONCURRENCY` when set; else one in development or without Redis (tickets, resumes and kept responses
    made on one worker must be found by the others), else every usable core up to `DEFAULT_MAX_WORKERS`."""
    if settings.web_concurrency is not None:
        return settings.web_concurrency
    if settings.is_dev or settings.redis_url is None:
        return 1
    return min(cores if cores is not None else usable_cores(), DEFAULT_MAX_WORKERS)


# -- the worker's side -------------------------------------------------------------------------------------------


def reuse_port_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening socket on host:port that the other workers bind too (`SO_REUSEPORT`)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class WorkerTag(logging.Filter):
    """Names the worker on every log line it writes."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.index
        return True


def tag_logs(index: int) -> None:
    for handler in logging.getLogger().handlers:
        handler.addFilter(WorkerTag(index))


# -- the supervisor ----------------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM (a drain) when the supervisor dies, so no worker outlives it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass(slots=True)
class WorkerSlot:
    index: int
    proc: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    young_deaths: int = 0
    exit_code: int | None = None


class Supervisor:
    """Runs `count` workers from `command(index)` until a signal, then waits for every one of them."""

    def __init__(self, count: int, command: Sequence[str]) -> None:
        self.slots = [WorkerSlot(i) for i in range(count)]
        self.command = list(command)
        self.stopping: signal.Signals | None = None
        self.failed = False
        self._wake = asyncio.Event()

    def run(self) -> int:
        return asyncio.run(self._main())

    async def _main(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in FORWARDED:
            loop.add_signal_handler(sig, self._on_signal, sig)
        log.info("starting workers", extra={"workers": len(self.slots), "supervisor_pid": os.getpid()})
        await asyncio.gather(*(self._keep(slot) for slot in self.slots))
        codes = [slot.exit_code for slot in self.slots]
        clean = not self.failed and all(code == 0 for code in codes)
        log.info("all workers exited", extra={"exit_codes": codes})
        return 0 if clean else 1

    def _on_signal(self, sig: signal.Signals) -> None:
        first = self.stopping is None
        self.stopping = sig
        log.info("signal: forwarding to workers", extra={"signal": sig.name, "again": not first})
        self._forward(sig)
        self._wake.set()

    def _forward(self, sig: signal.Signals) -> None:
        for slot in self.slots:
            if slot.proc is not None and slot.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    slot.proc.send_signal(sig)

    async def _keep(self, slot: WorkerSlot) -> None:
        """Start the worker, wait for it, restart it unless told to stop (or it keeps dying young)."""
        while self.stopping is None:
            await self._start(slot)
            assert slot.proc is not None
            slot.exit_code = await slot.proc.wait()
            if self.stopping is not None:
                return
            lived = time.monotonic() - slot.started_at
            slot.young_deaths = slot.young_deaths + 1 if lived < YOUNG_S else 0
            if slot.young_deaths >= GIVE_UP_AFTER:
                log.error("worker keeps dying at start; stopping", extra={"worker": slot.index})
                self.failed = True
                self._on_signal(signal.SIGTERM)
                return
            delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** max(0, slot.young_deaths - 1))
            log.warning(
                "worker exited unexpectedly; restarting",
                extra={
                    "worker": slot.index,
                    "pid": slot.proc.pid,
                    "exit_code": slot.exit_code,
                    "lived_s": round(lived, 1),
                    "restart_in_s": delay,
                },
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)  # a signal meanwhile: no restart

    async def _start(self, slot: WorkerSlot) -> None:
        slot.proc = await asyncio.create_subprocess_exec(
            *self.command,
            "--worker-index",
            str(slot.index),
            preexec_fn=_die_with_parent,
            # Its own process group: a terminal's Ctrl-C reaches the workers once, through the supervisor.
            start_new_session=True,
        )
        slot.started_at = time.monotonic()
        log.info("worker started", extra={"worker": slot.index, "pid": slot.proc.pid})
        if self.stopping is not None:  # the signal came while it was being started
            with contextlib.suppress(ProcessLookupError):
                slot.proc.send_signal(self.stopping)


def worker_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "gateway", "--host", host, "--port", str(port)]
