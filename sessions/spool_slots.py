"""Ledger spool files shared out among the processes of one data dir.

Each process (a single gateway, or each worker of several) appends to a spool file of its own, held with an
exclusive `flock` on a lock file beside it for as long as the process runs. The kernel drops the lock when the
process ends, however it ends (SIGKILL included), so a lock that can be taken means nobody writes that spool any
more: at start a process takes over such spool files (left by a dead worker, or by a different worker count) by
moving their lines into its own spool, which it then replays. A crash between the copy and the removal leaves
the lines in two spools; the store's idempotent upserts (stream id, segment number) make the second replay
harmless, so nothing is lost and nothing counted twice.

Blocking I/O throughout: called at start and stop, before and after the event loop has work.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path

from sessions.ledger import Spool

log = logging.getLogger("gateway.ledger")

SPOOL_PREFIX = "ledger-spool"
SPOOL_SUFFIX = ".jsonl"
SPARE_SLOTS = 64  # another live process already holds the preferred slot: take the first free spare


def spool_name(worker: int | None) -> str:
    """The preferred spool file of a process: the single process keeps today's name, worker i its own."""
    return f"{SPOOL_PREFIX}{SPOOL_SUFFIX}" if worker is None else f"{SPOOL_PREFIX}-w{worker}{SPOOL_SUFFIX}"


def lock_path(spool: Path) -> Path:
    # Beside the spool, never removed: the spool itself is unlinked after a replay, and a lock on an unlinked
    # inode would not exclude a process that creates the file anew.
    return spool.with_name(spool.name.removesuffix(SPOOL_SUFFIX) + ".lock")


def _try_lock(path: Path) -> int | None:
    """An open descriptor holding an exclusive lock on `path`, or None when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _unlock(fd: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


class SpoolSlots:
    """The spool a process claims in `folder` (preferring `preferred`), and the orphans it takes over."""

    def __init__(self, folder: Path, preferred: str) -> None:
        self.folder = folder
        self.preferred = folder / preferred
        self.path = self.preferred  # the claimed spool once `claim()` has run
        self._fd: int | None = None

    def _candidates(self) -> list[Path]:
        stem = self.preferred.name.removesuffix(SPOOL_SUFFIX)
        return [self.preferred, *(self.folder / f"{stem}-x{k}{SPOOL_SUFFIX}" for k in range(1, SPARE_SLOTS + 1))]

    def claim(self) -> Path:
        """Lock the preferred spool, or a spare one if another live process has it. Idempotent."""
        if self._fd is not None:
            return self.path
        self.folder.mkdir(parents=True, exist_ok=True)
        for candidate in self._candidates():
            fd = _try_lock(lock_path(candidate))
            if fd is not None:
                self._fd, self.path = fd, candidate
                if candidate != self.preferred:
                    log.warning(
                        "another process holds this ledger spool; using a spare",
                        extra={"preferred": self.preferred.name, "spool": candidate.name},
                    )
                return candidate
        raise OSError(f"no free ledger spool slot in {self.folder}")

    def adopt_orphans(self, into: Spool) -> int:
        """Move the lines of every spool nobody holds into `into` (this process's claimed spool); how many
        files were taken over."""
        taken = 0
        for orphan in sorted(self.folder.glob(f"{SPOOL_PREFIX}*{SPOOL_SUFFIX}")):
            if orphan == self.path:
                continue
            try:
                fd = _try_lock(lock_path(orphan))
            except OSError as exc:
                log.error("cannot lock a ledger spool to take it over", extra={"spool": orphan.name, "error": str(exc)})
                continue
            if fd is None:
                continue  # a live process writes it
            try:
                data = orphan.read_bytes() if orphan.exists() else b""
                if data.strip():
                    into.append_raw(data)
                    log.warning(
                        "took over the ledger spool of a process that is gone",
                        extra={"spool": orphan.name, "into": into.path.name, "bytes": len(data)},
                    )
                    taken += 1
                Spool(orphan).remove()
            finally:
                _unlock(fd)
        return taken

    def release(self) -> None:
        if self._fd is not None:
            _unlock(self._fd)
            self._fd = None
