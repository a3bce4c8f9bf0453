"""The builder inside the collector process (``intilery serve`` and ``demo``; ``--no-profiles``).

It runs in a thread beside the event loop, reading the log the collector writes: it is one
more consumer of the log, never a step of a request. With ``--workers N`` every worker tries
to take ``<data_dir>/.locks/profiles.lock`` and the one that holds it builds: one builder per host.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from pathlib import Path
from typing import AsyncIterator

from collector.log.layout import LOCK_DIR
from collector.log.segments import try_lock
from collector.profiles.builder import CHECKPOINT, POLL, Builder
from collector.profiles.rules import Rules
from collector.profiles.store import SqliteStore

log = logging.getLogger("intilery.profiles")

LOCK = "profiles"  # .locks/profiles.lock, beside the store's instance locks
RETRY_LOCK = 5.0  # seconds between tries of a worker that does not hold the lock
# The in-process builder shares the collector's core and its GIL: it works in small batches
# and rests after each one for as long as CPU_SHARE says (0.1: it works 10% of the time), so
# ingest keeps at least 90% of its speed (bench/README.md). Under a sustained overload it falls
# behind and catches up when the load drops; a host that must keep up runs ``intilery profiles``
# in a process of its own (another core).
CPU_SHARE = 0.1
RETRY_FAILED = 5.0  # seconds before a failed batch is tried again
IN_PROCESS_BATCH = 500


def open_store(target: str | Path, *, reads_only: bool = False):
    """The store a ``--profiles-db`` names: a ``postgresql://`` URL, or a SQLite file path."""
    if str(target).startswith(("postgresql://", "postgres://")):
        from collector.profiles.postgres import PostgresStore

        return PostgresStore(str(target), reads_only=reads_only)
    return SqliteStore(Path(target))


def db_target(config) -> str:
    """Where the profiles are: ``profiles_db``, else ``<data_dir>/profiles.db``."""
    return config.profiles_db or str(Path(config.data_dir) / "profiles.db")


def checkpoint_name(config) -> str:
    """The builder's checkpoint: one per log when a database is shared (PostgreSQL)."""
    if not config.profiles_db.startswith(("postgresql://", "postgres://")):
        return CHECKPOINT
    return f"{CHECKPOINT}@{socket.gethostname()}:{Path(config.data_dir).resolve()}"


def take_lock(data_dir: Path) -> int | None:
    """The host's builder lock, ``<data_dir>/.locks/profiles.lock`` (a file descriptor held
    open), or None when another process has it."""
    (data_dir / LOCK_DIR).mkdir(parents=True, exist_ok=True)
    return try_lock(data_dir, LOCK)


async def run_builder(config, stop: asyncio.Event) -> None:
    """Follow the log until ``stop`` is set (a step in progress is finished, then committed)."""
    fd = None
    while fd is None:
        fd = take_lock(Path(config.data_dir))
        if fd is None:
            try:
                await asyncio.wait_for(stop.wait(), RETRY_LOCK)
                return
            except asyncio.TimeoutError:
                continue
    store = await asyncio.to_thread(open_store, db_target(config))
    try:
        builder = Builder(store, Path(config.data_dir), Rules.from_config(config), batch=IN_PROCESS_BATCH,
                          checkpoint=checkpoint_name(config))  # fmt: skip
        log.info("profile builder following the log", extra={"events": builder.count})
        while not stop.is_set():
            started = time.monotonic()
            try:
                read = await asyncio.to_thread(builder.step)
                rest = POLL if read == 0 else (time.monotonic() - started) * (1 / CPU_SHARE - 1)
            except Exception:  # a full disk, a broken database, a bug: logged, retried, never the collector's end
                log.exception("profile builder step failed; the batch is read again")
                rest = RETRY_FAILED
            try:
                await asyncio.wait_for(stop.wait(), rest)
            except asyncio.TimeoutError:
                pass
    finally:
        store.close()
        os.close(fd)


def builder_context(config):
    """An ``app.cleanup_ctx`` entry running the builder for as long as the app runs."""

    async def context(app) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(run_builder(config, stop))
        yield
        stop.set()
        await task

    return context
