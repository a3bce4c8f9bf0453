"""The builder beside the collector (``intilery serve`` and ``demo``; ``--no-profiles``), and the
one loop that follows the log into the profile database (``follow``, also ``intilery profiles``).

The collector runs the builder as a process of its own, started and watched by the serving
process: Python runs one thread at a time, so a builder thread would take its time from
ingest; a process takes an idle core instead, at a lower priority (``NICE``) so that on a
busy machine ingest comes first, pausing between batches while its core is contended
(``Yielding``). It is one more consumer of the log, never a step of a request::

    collector (event loop) ── spawn ──▶ builder process: lock, follow(config), exit with the collector
              └ it exited?  start another after RETRY_FAILED s; at shutdown SIGTERM, then wait

The builder process holds ``<data_dir>/.locks/profiles.lock`` while it runs: with ``--workers N``
each worker starts one only when the lock is free, so there is one builder per host, and an
``intilery profiles`` on the same data directory is refused. It asks Linux for SIGTERM when its
collector dies, and stops after the batch in hand (committed, cursor included).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import socket
import time
from pathlib import Path
from typing import AsyncIterator, Callable

from collector.log.layout import LOCK_DIR
from collector.log.segments import try_lock
from collector.profiles.builder import CHECKPOINT, Builder
from collector.profiles.rules import Rules
from collector.profiles.store import SqliteStore

log = logging.getLogger("intilery.profiles")

LOCK = "profiles"  # .locks/profiles.lock, beside the store's instance locks
RETRY_LOCK = 5.0  # seconds between a worker's looks at a lock another builder holds
RETRY_FAILED = 5.0  # seconds before a builder that exited (a full disk, a broken database) is started again
STOP_TIMEOUT = 30.0  # seconds the builder has to finish its batch at shutdown before SIGKILL
NICE = 10  # the builder's priority below the collector's: ingest first when cores are short
LOCKED_OUT = 3  # the builder process's exit code when another builder holds the lock
YIELD_FACTOR = 5  # on a contended core the builder pauses this many times what its batch took ...
YIELD_MAX = 5.0  # ... for at most this many seconds, so profiles never stop
BUSY = 0.5  # of a CPU: a collector using more than this wants its core


def open_store(target: str | Path, *, reads_only: bool = False, building: bool = False, migrate: bool | None = None):
    """The store a ``--profiles-db`` names: a ``postgresql://`` URL, or a SQLite file path
    (``building``: the builder's, with SQLite's larger page cache; ``migrate=False``: a database
    of another version is left as it is, ``outdated``, for the builder: privacy jobs open it so)."""
    if str(target).startswith(("postgresql://", "postgres://")):
        from collector.profiles.postgres import PostgresStore

        return PostgresStore(str(target), reads_only=reads_only, migrate=migrate)
    return SqliteStore(Path(target), reads_only=reads_only, building=building, migrate=migrate)


def db_target(config) -> str:
    """Where the profiles are: ``profiles_db``, else ``<data_dir>/profiles.db``."""
    return config.profiles_db or str(Path(config.data_dir) / "profiles.db")


def checkpoint_name(config) -> str:
    """The builder's checkpoint: one per log when a database is shared (PostgreSQL); the NATS
    stream is one log for every collector and host."""
    if config.store == "nats":
        return f"{CHECKPOINT}@nats:{config.nats_stream}"
    if not config.profiles_db.startswith(("postgresql://", "postgres://")):
        return CHECKPOINT
    return f"{CHECKPOINT}@{socket.gethostname()}:{Path(config.data_dir).resolve()}"


def take_lock(data_dir: Path) -> int | None:
    """The host's builder lock, ``<data_dir>/.locks/profiles.lock`` (a file descriptor held
    open), or None when another process has it."""
    (data_dir / LOCK_DIR).mkdir(parents=True, exist_ok=True)
    return try_lock(data_dir, LOCK)


def follow(config, keep_going: Callable[[], bool], *, rebuild: bool = False, once: bool = False) -> dict:
    """Keep the profile database current from the log until ``keep_going()`` is false (``once``:
    until the log is read to its end); the builder's counts. The caller holds the lock."""
    store = open_store(db_target(config), building=True)
    try:
        if rebuild:
            store.reset()
        builder = Builder(store, Path(config.data_dir), Rules.from_config(config), checkpoint=checkpoint_name(config),
                          stream=config if config.store == "nats" else None)  # fmt: skip
        try:
            log.info("profile builder following the log", extra={"events": builder.count, "store": config.store})
            if once:
                builder.catch_up(keep_going)
            else:
                builder.run(keep_going)
            return builder.stats
        finally:
            builder.close()
    finally:
        store.close()


def builder_process(config, parent: int) -> None:
    """The body of the collector's builder process (spawned: a fresh interpreter)."""
    from collector.logs import setup_logging
    from collector.workers import _die_with

    stopped: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, frame: stopped.append(number))
    signal.pthread_sigmask(signal.SIG_SETMASK, set())  # a worker's mask survives the exec
    _die_with(parent)
    os.nice(NICE)
    setup_logging(config.log_format)
    fd = take_lock(Path(config.data_dir))
    if fd is None:  # another worker's builder took it first
        raise SystemExit(LOCKED_OUT)
    try:
        follow(config, Yielding(lambda: not stopped, parent))
    finally:
        os.close(fd)


class Yielding:
    """The builder's ``keep_going`` beside the collector: its collector first, also on a shared core.

    Nice 10 alone still leaves the builder a tenth of a core the collector wants, and more of
    the moments the collector waits for a disk. So between batches the builder looks at how long
    it waited for a CPU (Linux's run delay, ``/proc/self/schedstat``) against how long it ran,
    and at how busy its collector (``collector``, a pid) was meanwhile: waiting longer than
    running while the collector used more than ``BUSY`` of a CPU means the collector wants the
    core, and the builder pauses for ``YIELD_FACTOR`` times the batch's time on and waiting for
    the CPU (at most ``YIELD_MAX`` s): it then takes a few percent of that core. With an idle
    core, or an idle collector (catching up after a load, whatever else runs), it never pauses;
    elsewhere than Linux it never pauses either."""

    def __init__(self, keep_going: Callable[[], bool], collector: int) -> None:
        self.keep_going, self.collector, self.pauses, self.paused = keep_going, collector, 0, 0.0
        self.last = self._sample()

    def _sample(self) -> tuple[int, int, float, float] | None:
        stat, cpu = _schedstat(), _cpu_seconds(self.collector)
        return None if stat is None or cpu is None else (*stat, cpu, time.monotonic())

    def __call__(self) -> bool:
        now = self._sample()
        if now is not None and self.last is not None:
            ran, waited = now[0] - self.last[0], now[1] - self.last[1]
            busy = (now[2] - self.last[2]) > BUSY * (now[3] - self.last[3])
            if waited > ran > 0 and busy and self.keep_going():
                pause = min(YIELD_MAX, YIELD_FACTOR * (ran + waited) / 1e9)
                self.pauses, self.paused = self.pauses + 1, self.paused + pause
                until = time.monotonic() + pause
                while self.keep_going() and (left := until - time.monotonic()) > 0:
                    time.sleep(min(left, 0.2))  # a stop is taken within 0.2 s
                now = self._sample()
        self.last = now
        return self.keep_going()


def _cpu_seconds(pid: int) -> float | None:
    """The CPU seconds a process has used (None where Linux does not say, or it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _schedstat() -> tuple[int, int] | None:
    """This thread's nanoseconds on a CPU and waiting for one (None where Linux does not say)."""
    try:
        with open("/proc/thread-self/schedstat", "rb") as f:
            ran, waited, _ = f.read().split()
    except (OSError, ValueError):
        return None
    return int(ran), int(waited)


async def run_builder(config, stop: asyncio.Event) -> None:
    """Start the builder process when the host has none, watch it, stop it when ``stop`` is set."""
    spawn = multiprocessing.get_context("spawn")
    loop = asyncio.get_running_loop()
    data_dir = Path(config.data_dir)
    while not stop.is_set():
        rest = RETRY_LOCK
        if _lock_is_free(data_dir):
            process = spawn.Process(target=builder_process, args=(config, os.getpid()), name="intilery-profiles")
            process.start()
            exited = loop.create_future()
            loop.add_reader(process.sentinel, lambda: exited.done() or exited.set_result(None))
            stopping = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait([exited, stopping], return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
                if not exited.done():  # shutting down: the batch in hand is finished and committed
                    process.terminate()
                    await asyncio.to_thread(process.join, STOP_TIMEOUT)
                    if process.exitcode is None:
                        log.error("the profile builder did not stop in time; killing it")
                        process.kill()
                loop.remove_reader(process.sentinel)
                await asyncio.to_thread(process.join)
            if stop.is_set():
                return
            if process.exitcode != LOCKED_OUT:
                log.warning("the profile builder exited; starting another", extra={"exit": process.exitcode,
                                                                                    "restart_in": RETRY_FAILED})  # fmt: skip
                rest = RETRY_FAILED
        try:
            await asyncio.wait_for(stop.wait(), rest)
        except asyncio.TimeoutError:
            pass


def _lock_is_free(data_dir: Path) -> bool:
    fd = take_lock(data_dir)
    if fd is None:
        return False
    os.close(fd)
    return True


def builder_context(config):
    """An ``app.cleanup_ctx`` entry running the builder for as long as the app runs."""

    async def context(app) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(run_builder(config, stop))
        yield
        stop.set()
        await task

    return context
