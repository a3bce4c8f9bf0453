"""The file log store: one writer per process, group commit, fsync before the answer.

Handlers call ``append``; while no commit is under way, the first append has everything
queued in this step of the event loop handed to the writer thread, which writes it in one
go and fsyncs (policy ``always``); when that commit comes back (the event loop's one wake-up for it), its handlers
are answered and whatever was appended meanwhile goes in the next commit, so one fsync
covers every request that arrived during the last one.

The rest is each in its module: the open segments (``segment_log``), what a crash left
(``recovery``), the upkeep between commits (``housekeeping``), the readiness probe
(``readiness``) and the duplicate filter's seed (``seeding``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from collector.errors import Unavailable
from collector.log import housekeeping, readiness, recovery, segments, seeding
from collector.log.housekeeping import LATE_LINES_SECONDS, TRIM_EVERY_SECONDS
from collector.log.layout import EVENTS, REJECTED, day_partition, hour_partition
from collector.log.segment_log import Segment, SegmentLog
from collector.log.segments import InstanceLock, compress, make_dirs
from collector.metrics import Metrics

log = logging.getLogger("intilery.store")


def _background_priority() -> None:
    """Run the calling thread at the lowest CPU priority (Linux: nice applies per thread).

    Compressing a closed segment (gzip, about 6 µs of CPU per event) is work that can wait:
    on a busy core it yields to the threads that take events and acknowledge them, and
    catches up when the load drops; at shutdown every compression is still awaited.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):  # not Linux, or not allowed: normal priority
        pass


class FileStore:
    """The embedded store. ``fsync``: ``always`` (default), ``interval`` (at most ``interval`` s of loss) or ``never``."""

    # A partial line left by a crash is kept in rejected/; a store whose writer acknowledges
    # only after the fsync (the archive) cuts it instead, since it is delivered again.
    torn_lines_rejected = True

    def __init__(
        self,
        data_dir: Path,
        *,
        fsync: str = "always",
        fsync_interval: float = 1.0,
        segment_max_bytes: int = 128 * 1024 * 1024,
        max_pending_bytes: int = 64 * 1024 * 1024,
        rejected_retention_days: float = 30.0,
        rejected_max_bytes: int = 1024 * 1024 * 1024,
        metrics: Metrics | None = None,
        instance_prefix: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.fsync, self.fsync_interval = fsync, fsync_interval
        self.segment_max_bytes, self.max_pending_bytes = segment_max_bytes, max_pending_bytes
        self.metrics = metrics or Metrics()
        self.instance_prefix = instance_prefix
        self.clock = clock  # which partitions are current (tests set it)
        self.rejected_retention_days, self.rejected_max_bytes = rejected_retention_days, rejected_max_bytes
        self._trimmed_at = float("-inf")
        self.error: str | None = None
        self._pending: list[tuple[str, str, list[bytes], int]] = []  # (log, partition, lines, bytes)
        self._waiters: list[asyncio.Future] = []
        self.pending_bytes = 0
        self._last_sync = 0.0
        self._task: asyncio.Future | None = None  # set while the store is open: done once it has closed
        self._commit_running = False
        self._housekeeping: asyncio.Task | None = None
        self._compressions: set[asyncio.Future] = set()
        self._uncompressed: set[Path] = set()  # closed segments whose compression failed
        self._closing = False
        self._needed = 0  # bytes of the last commit that failed: free space the probe asks for

    @property
    def instance(self) -> str:
        return self.lock.name

    @property
    def where(self) -> str:
        """Where the events go, for people (the start-up banner)."""
        return f"{self.data_dir}/{EVENTS}"

    # --- life cycle -------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._io = ThreadPoolExecutor(1, thread_name_prefix="store-writer")
        self._gz = ThreadPoolExecutor(1, thread_name_prefix="store-gzip", initializer=_background_priority)
        await self._loop.run_in_executor(self._io, self._open)
        self._task = self._loop.create_future()
        self._housekeeping = asyncio.create_task(self._tick(), name="store-housekeeping")
        self.metrics.gauge("intilery_store_queue_bytes", lambda: self.pending_bytes)
        self.metrics.gauge("intilery_store_ready", lambda: 0 if self.error else 1)

    def _open(self) -> None:
        make_dirs(self.data_dir)
        self.lock = InstanceLock(self.data_dir, self.instance_prefix)
        self.logs = {
            EVENTS: SegmentLog(self.data_dir / EVENTS, self.lock, self.segment_max_bytes, self._closed),
            REJECTED: SegmentLog(self.data_dir / REJECTED, self.lock, self.segment_max_bytes, self._closed),
        }
        self._recover()
        log.info("file store open", extra={"data_dir": str(self.data_dir), "instance": self.lock.name, "fsync": self.fsync})

    def _recover(self) -> None:
        """Finish what a crashed (or killed) process left (``recovery.recover``)."""
        recovery.recover(self.data_dir, self.lock.name, self.logs[REJECTED], torn_lines_rejected=self.torn_lines_rejected)

    async def close(self) -> None:
        """Finish pending writes, close and compress every segment, release the instance."""
        if self._task is None:
            return
        self._closing = True
        self._housekeeping.cancel()
        if not self._commit_running:
            self._task.set_result(None)
        await self._task  # the last commit is back
        self._task = None
        try:
            await self._loop.run_in_executor(self._io, self._close_all)
        except OSError as exc:
            log.error("closing segments failed: %s", exc)
        if self._compressions:
            await asyncio.gather(*self._compressions, return_exceptions=True)
        self._compress_again()
        if self._compressions:
            await asyncio.gather(*self._compressions, return_exceptions=True)
        self._io.shutdown()
        self._gz.shutdown()
        self.lock.release()
        log.info("file store closed", extra={"instance": self.lock.name})

    def _close_all(self) -> None:
        for segment_log in self.logs.values():
            segment_log.close_all()

    async def rotate_all(self) -> None:
        """Close every open segment now and wait until each is compressed (an erasure rewrites
        only closed segments). The next line opens a new segment; ingest goes on meanwhile."""
        if self._task is None:
            return
        await self._loop.run_in_executor(self._io, self._close_all)
        while self._compressions:
            await asyncio.gather(*list(self._compressions), return_exceptions=True)

    # --- appending ----------------------------------------------------------------------
    def append(
        self, lines: list[bytes], *, partition: str, log: str = EVENTS, ids: list[str] | None = None, source: str = ""
    ) -> asyncio.Future:
        """Queue NDJSON lines; the future resolves once they are durable (per the fsync policy).

        ``ids`` and ``source`` are for stores that address messages one by one (NATS); the
        file store needs only the partition. The lines are joined by the writer thread, once
        for the whole commit, rather than copied here on the event loop for each request.
        """
        size = sum(map(len, lines))
        if self._task is None or self._task.done():
            raise Unavailable("store_unavailable", "the store is shutting down", retry_after=5)
        if self.pending_bytes + size > self.max_pending_bytes and self.pending_bytes:
            raise Unavailable("store_overloaded", "the store is behind; retry shortly", retry_after=1)
        waiter = self._loop.create_future()
        self._pending.append((log, partition, list(lines), size))
        self._waiters.append(waiter)
        self.pending_bytes += size
        if not self._commit_running:  # the next commit takes everything appended in this step of the loop
            self._commit_running = True
            self._loop.call_soon(self._next_commit)
        return waiter

    def _next_commit(self) -> None:
        """Hand everything queued to the writer thread; ``_committed`` runs when it is back."""
        batch, waiters = self._pending, self._waiters
        self._pending, self._waiters = [], []
        self._commit_running = True
        started = time.perf_counter()
        job = self._loop.run_in_executor(self._io, self._commit, batch)
        job.add_done_callback(lambda done: self._committed(done, batch, waiters, started))

    def _committed(self, done: asyncio.Future, batch: list, waiters: list[asyncio.Future], started: float) -> None:
        exc = done.exception()
        if exc is not None:  # whatever it is, the waiters get an answer
            if isinstance(exc, OSError):
                error = self._failed(exc)
                self._needed = sum(size for _, _, _, size in batch)
            else:
                error = self._broken(exc)
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(error)
        else:
            if self.error:
                log.info("store writable again", extra={"data_dir": str(self.data_dir)})
            self.error = None
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        self.pending_bytes -= sum(size for _, _, _, size in batch)  # held until written, not until taken
        self.metrics.observe_flush(time.perf_counter() - started)
        self._commit_running = False
        if self._pending:
            self._next_commit()
        elif self._closing and not self._task.done():
            self._task.set_result(None)

    def _commit(self, batch: list[tuple[str, str, list[bytes], int]]) -> None:
        grouped: dict[tuple[str, str], list[bytes]] = {}
        for log_name, partition, lines, _ in batch:
            grouped.setdefault((log_name, partition), []).extend(lines)
        written: list[tuple[SegmentLog, Segment, int]] = []
        try:
            for (log_name, partition), parts in grouped.items():
                segment_log = self.logs[log_name]
                written.append((segment_log, *segment_log.write(partition, b"".join(parts))))
            if self.fsync == "always" or (
                self.fsync == "interval" and time.monotonic() - self._last_sync >= self.fsync_interval
            ):
                self._sync()
        except Exception:
            for segment_log, seg, size in written:
                segment_log.undo(seg, size)
            raise
        for segment_log in self.logs.values():
            segment_log.rotate()

    def _sync(self) -> None:
        for segment_log in self.logs.values():
            segment_log.sync()
        self._last_sync = time.monotonic()

    def _broken(self, exc: Exception) -> Unavailable:
        """A fault that is not the disk's (a bug): logged with its traceback, answered 503; the writer goes on."""
        log.error("the store writer failed; its requests were answered 503", exc_info=exc)
        self.error = "internal error in the store writer"
        return Unavailable("store_unavailable", "the event store hit an internal error; retry", retry_after=5)

    def _failed(self, exc: OSError) -> Unavailable:
        """A disk fault: the details (path, the OS's error) go to the log, the answer says what kind it is."""
        reason = "disk full" if segments.is_disk_full(exc) else "cannot write to the data directory"
        if self.error != reason:
            log.error("store unavailable", extra={"reason": reason, "data_dir": str(self.data_dir), "error": str(exc)})
        self.error = reason
        return Unavailable("store_unavailable", f"the event store cannot take writes ({reason})", retry_after=5)

    def _closed(self, path: Path) -> None:
        """Called from the writer thread when a segment is closed: gzip it in the background."""
        self._loop.call_soon_threadsafe(self._compress, path)

    def _compress(self, path: Path) -> None:
        job = self._loop.run_in_executor(self._gz, compress, path)
        self._compressions.add(job)
        job.add_done_callback(lambda done: self._compressed(done, path))

    def _compressed(self, job: asyncio.Future, path: Path) -> None:
        self._compressions.discard(job)
        if job.exception() is not None:
            log.error("compressing a segment failed (tried again later): %s", job.exception())
            self._uncompressed.add(path)

    def _compress_again(self) -> None:
        """Compress again the closed segments whose compression failed (a full disk, since freed)."""
        again, self._uncompressed = self._uncompressed, set()
        for path in again:
            if path.exists():
                self._compress(path)

    # --- housekeeping -------------------------------------------------------------------
    async def _tick(self) -> None:
        """Once a second: fsync for the interval policy, close segments of past hours."""
        while True:
            await asyncio.sleep(min(1.0, self.fsync_interval))
            await self.housekeep()

    async def housekeep(self) -> None:
        """Sync (per the policy) and close the segments of partitions that time has left behind."""
        try:
            await self._loop.run_in_executor(self._io, self._housekeep)
            if self._uncompressed and self.error is None:
                self._compress_again()
        except OSError as exc:
            self._failed(exc)
        except Exception as exc:  # noqa: BLE001 - housekeeping must go on
            self._broken(exc)

    def _housekeep(self) -> None:
        if self.fsync != "never":
            self._sync()
        now, late = self.clock(), self.clock() - LATE_LINES_SECONDS
        self.logs[EVENTS].rotate({hour_partition(now), hour_partition(late)})
        self.logs[REJECTED].rotate({day_partition(now), day_partition(late)})
        if now - self._trimmed_at >= TRIM_EVERY_SECONDS:
            self._trimmed_at = now
            self._trim_rejected(now)

    def _trim_rejected(self, now: float) -> None:
        """``rejected/`` against its retention and size cap (``housekeeping.trim_rejected``)."""
        if not housekeeping.trim_rejected(self.data_dir, now, self.rejected_retention_days, self.rejected_max_bytes):
            self._trimmed_at = float("-inf")  # a rewrite held the directory: again at the next tick

    async def recent_ids(self, window: float, limit: int) -> list[tuple[str, str]]:
        """The (source, messageId) of events stored in the last ``window`` seconds, oldest first: the newest ``limit``."""
        return await self._loop.run_in_executor(None, seeding.recent_ids, self.data_dir, window, limit)

    async def ready(self) -> tuple[bool, str | None]:
        """Whether the store takes writes; when it did not, probe the directory again."""
        if self.error:
            try:
                await self._loop.run_in_executor(self._io, self._probe)
            except OSError as exc:
                self._failed(exc)
            else:
                log.info("store writable again", extra={"data_dir": str(self.data_dir)})
                self.error = None
        return self.error is None, self.error

    def _probe(self) -> None:
        readiness.probe(self.data_dir, self.lock.name, self._needed)
