"""The ledger writer: takes finished streams without blocking them and writes them in batches.

Nothing billed is lost and nothing is counted twice:
- records are batched (by size and time) and written with idempotent upserts (stream id, segment number);
- when the store is unreachable, pending records are appended to a local spool file (one JSON line per
  record, fsync'd) and the store is retried with jittered exponential backoff;
- the spool is replayed when the store is back, and at the next start after a crash; a replay that is cut
  short is simply replayed again, which the idempotent writes make harmless;
- a record the store rejects as invalid (not an outage) is moved to a `.rejected` file beside the spool and
  logged, so one bad record cannot hold up the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import orjson

from sessions.codec import RecordDecodeError, record_from_dict, record_to_dict
from sessions.records import StreamRecord

if TYPE_CHECKING:
    from sessions.spool_slots import SpoolSlots

log = logging.getLogger("gateway.ledger")


class UsageStore(Protocol):
    async def write_streams(self, records: Sequence[StreamRecord]) -> int:
        """Idempotent: writing the same stream twice must leave one row. Returns how many were new.

        Raises an OSError (e.g. the store's `StoreUnavailable`) when the store cannot be reached, any other
        Exception when it refuses the records themselves.
        """
        ...


class LedgerObserver(Protocol):
    """Told about each record when the ledger takes it, and again once the store has it."""

    def submitted(self, record: StreamRecord) -> None: ...

    def written(self, records: Sequence[StreamRecord]) -> None: ...


class _StoreDown(Exception):
    pass


class Spool:
    """An append-only file of records, one JSON line each. Blocking I/O: call through a thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rejected_path = path.with_name(path.name + ".rejected")

    def exists(self) -> bool:
        return self.path.exists() and self.path.stat().st_size > 0

    def repair_tail(self) -> None:
        """A crash mid-append leaves a torn last line: end it, so the next record starts on a line of its own."""
        if not self.exists():
            return
        with open(self.path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")
                f.flush()
                os.fsync(f.fileno())

    def append(self, records: Sequence[StreamRecord]) -> None:
        data = b"".join(orjson.dumps(record_to_dict(r)) + b"\n" for r in records)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        with open(self.path, "ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if created:
            self._sync_dir()

    def append_raw(self, data: bytes) -> None:
        """Lines taken over from another spool, as they are (a torn last line stays one line, set aside later)."""
        self.repair_tail()
        if not data.endswith(b"\n"):
            data += b"\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        self._sync_dir()

    def read_from(self, offset: int, max_records: int) -> tuple[list[StreamRecord], int]:
        """Up to `max_records` records starting at byte `offset`; returns them and the offset after them.
        Lines that cannot be read back are moved to the rejected file."""
        out: list[StreamRecord] = []
        with open(self.path, "rb") as f:
            f.seek(offset)
            while len(out) < max_records:
                line = f.readline()
                if not line:
                    break
                offset += len(line)
                if not line.strip():
                    continue
                try:
                    out.append(record_from_dict(orjson.loads(line)))
                except (orjson.JSONDecodeError, RecordDecodeError) as exc:
                    log.error("unreadable spool line set aside", extra={"error": str(exc), "bytes": len(line)})
                    self.reject_raw(line, str(exc))
        return out, offset

    def reject_raw(self, line: bytes, reason: str) -> None:
        entry = orjson.dumps({"reason": reason, "line": line.decode("utf-8", "replace").rstrip("\n")}) + b"\n"
        with open(self.rejected_path, "ab") as f:
            f.write(entry)
            f.flush()
            os.fsync(f.fileno())

    def reject(self, record: StreamRecord, reason: str) -> None:
        entry = orjson.dumps({"reason": reason, "record": record_to_dict(record)}) + b"\n"
        with open(self.rejected_path, "ab") as f:
            f.write(entry)
            f.flush()
            os.fsync(f.fileno())

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._sync_dir()

    def count(self) -> int:
        if not self.path.exists():
            return 0
        with open(self.path, "rb") as f:
            return sum(1 for line in f if line.strip())

    def _sync_dir(self) -> None:
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class LedgerWriter:
    """Batches by size and time. `flush()` writes everything pending now (spooling what it cannot)."""

    def __init__(
        self,
        store: UsageStore,
        *,
        spool_path: Path | None = None,
        slots: SpoolSlots | None = None,
        batch_size: int = 100,
        interval_s: float = 0.25,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 15.0,
        observers: Sequence[LedgerObserver] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        # With `slots` the spool is the one this process claims at start (several processes share a data dir).
        self._slots = slots
        if slots is not None:
            spool_path = slots.preferred
        self._spool = Spool(spool_path) if spool_path is not None else None
        self._batch_size = batch_size
        self._interval = interval_s
        self._retry_initial = retry_initial_s
        self._retry_max = retry_max_s
        self._observers = list(observers)
        self._clock = clock
        self._pending: list[StreamRecord] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._failures = 0
        self._retry_at = 0.0
        self._spooled = 0  # records in the spool file not yet replayed
        self._replay_offset = 0
        self.written = 0  # records the store accepted (new or already there)
        self.rejected = 0

    # -- state --------------------------------------------------------------------

    @property
    def backlog(self) -> int:
        """Records not yet in the store: pending in memory plus waiting in the spool."""
        return len(self._pending) + self._spooled

    @property
    def spooled(self) -> int:
        return self._spooled

    @property
    def can_spool(self) -> bool:
        """Whether finished streams survive a database outage here (a spool file can be written)."""
        if self._spool is None:
            return False
        folder = self._spool.path.parent
        return folder.is_dir() and os.access(folder, os.W_OK)

    @property
    def store_down(self) -> bool:
        return self._failures > 0

    def add_observer(self, observer: LedgerObserver) -> None:
        self._observers.append(observer)

    # -- intake ---------------------------------------------------------------------

    def submit(self, record: StreamRecord) -> None:
        self._pending.append(record)
        for o in self._observers:
            o.submitted(record)
        if len(self._pending) >= self._batch_size:
            self._wake.set()

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        if self._slots is not None:
            try:
                self._spool = Spool(self._slots.claim())
                self._slots.adopt_orphans(self._spool)
            except OSError as exc:  # an unwritable data dir: readiness reports that nothing can spool
                log.error("cannot claim a ledger spool", extra={"folder": str(self._slots.folder), "error": str(exc)})
        if self._spool is not None:
            # Left over from a crash or an outage the last process did not see the end of.
            self._spool.repair_tail()
            self._spooled = self._spool.count()
            if self._spooled:
                log.warning("ledger spool found at start; replaying", extra={"spooled": self._spooled})
        self._task = asyncio.create_task(self._loop(), name="ledger writer")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await self.flush(final=True)
        finally:
            if self._slots is not None:
                self._slots.release()  # what is left in the spool is anyone's to take over from here

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            await self.flush()

    # -- writing ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def settled(self) -> AsyncIterator[None]:
        """Write what is pending, then hold writes back while the caller reads: its reads see the streams it was
        told finished, and one state of the store (no batch lands between two queries). During an outage the
        pending records are left for the spool and the reader gets what the store has."""
        async with self._lock:
            if self._pending and not self.store_down:
                await self._flush_locked(final=False)
            yield

    async def flush(self, *, final: bool = False) -> None:
        """Replay the spool, then write what is pending. During an outage (and before the next retry is
        due) pending records go to the spool instead. `final` (shutdown) tries the store once for the
        pending records regardless of backoff and spools whatever it could not write."""
        async with self._lock:
            await self._flush_locked(final=final)

    async def _flush_locked(self, *, final: bool) -> None:
        if not final and self.store_down and self._clock() < self._retry_at:
            await self._spool_pending()
            return
        try:
            if not final:  # at shutdown the spool waits for the next start: drain time is short
                await self._replay()
            while self._pending:
                batch = self._pending[: self._batch_size]
                await self._write(batch)
                del self._pending[: len(batch)]
        except _StoreDown:
            await self._spool_pending()
            return
        if self._failures:
            log.info("ledger store reachable again", extra={"after_failures": self._failures})
        self._failures = 0

    async def _write(self, batch: Sequence[StreamRecord]) -> None:
        """Write one batch; isolate records the store refuses. Raises _StoreDown on an outage."""
        try:
            await self._store.write_streams(batch)
        except OSError as exc:
            self._down(exc)
        except Exception as exc:  # noqa: BLE001 - any refusal: find the bad records one by one below
            await self._isolate(batch, exc)
            return
        self._written(batch)

    async def _isolate(self, batch: Sequence[StreamRecord], batch_error: Exception) -> None:
        good: list[StreamRecord] = []
        bad: list[tuple[StreamRecord, Exception]] = []
        for r in batch:
            try:
                await self._store.write_streams([r])
            except OSError as exc:
                self._down(exc)
            except Exception as exc:  # noqa: BLE001 - recorded with the record in the rejected file
                bad.append((r, exc))
            else:
                good.append(r)
        if good:
            self._written(good)
        if bad and not good and len(batch) > 1:
            # Every record refused: the store is misbehaving, not the data. Treat it as an outage.
            self._down(batch_error)
        for r, err in bad:
            reason = f"{type(err).__name__}: {err}"
            log.error(
                "ledger record refused by the store; set aside", extra={"stream_id": r.stream_id, "error": reason}
            )
            if self._spool is not None:
                await asyncio.to_thread(self._spool.reject, r, reason)
            self.rejected += 1

    def _written(self, records: Sequence[StreamRecord]) -> None:
        self.written += len(records)
        for o in self._observers:
            o.written(records)

    def _down(self, exc: BaseException) -> None:
        self._failures += 1
        delay = min(self._retry_max, self._retry_initial * 2 ** min(self._failures - 1, 16))
        delay *= random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not security
        self._retry_at = self._clock() + delay
        if self._failures == 1 or self._failures % 10 == 0:
            log.warning(
                "ledger store unavailable; spooling",
                extra={"error": str(exc), "failures": self._failures, "retry_in_s": round(delay, 2)},
            )
        raise _StoreDown from exc

    async def _spool_pending(self) -> None:
        if not self._pending:
            return
        batch = list(self._pending)
        if self._spool is None:
            return  # no spool configured: keep them in memory and retry
        await asyncio.to_thread(self._spool.append, batch)
        del self._pending[: len(batch)]
        self._spooled += len(batch)

    async def _replay(self) -> None:
        spool = self._spool
        if spool is None or not self._spooled:
            return
        while True:
            records, next_offset = await asyncio.to_thread(spool.read_from, self._replay_offset, self._batch_size)
            if not records:
                if next_offset == self._replay_offset:
                    break
                self._replay_offset = next_offset  # only unreadable lines in this stretch
                continue
            await self._write(records)
            self._replay_offset = next_offset
            self._spooled = max(0, self._spooled - len(records))
        await asyncio.to_thread(spool.remove)
        log.info("ledger spool replayed", extra={"up_to_byte": self._replay_offset})
        self._replay_offset = 0
        self._spooled = 0

    def pending_records(self) -> Iterator[StreamRecord]:
        return iter(list(self._pending))
