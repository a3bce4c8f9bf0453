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

The profile database a ``--profiles-db`` names, and the host's lock, are ``database.py``'s; the
pauses on a contended core are ``yielding.py``'s.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
from pathlib import Path
from typing import AsyncIterator, Callable

from collector.profiles.builder import Builder
from collector.profiles.database import checkpoint_name, db_target, open_store, take_lock
from collector.profiles.rules import Rules
from collector.profiles.yielding import Yielding

log = logging.getLogger("intilery.profiles")

RETRY_LOCK = 5.0  # seconds between a worker's looks at a lock another builder holds
RETRY_FAILED = 5.0  # seconds before a builder that exited (a full disk, a broken database) is started again
STOP_TIMEOUT = 30.0  # seconds the builder has to finish its batch at shutdown before SIGKILL
NICE = 10  # the builder's priority below the collector's: ingest first when cores are short
LOCKED_OUT = 3  # the builder process's exit code when another builder holds the lock


def follow(config, keep_going: Callable[[], bool], *, rebuild: bool = False, once: bool = False) -> dict:
    """Keep the profile database current from the log until ``keep_going()`` is false (``once``:
    until the log is read to its end); the builder's counts. The caller holds the lock."""
    store = open_store(db_target(config), building=True)
    try:
        if rebuild:
            store.reset()
        rules, stream = Rules.from_config(config), config if config.store == "nats" else None
        builder = Builder(store, Path(config.data_dir), rules, checkpoint=checkpoint_name(config), stream=stream)
        builder.engage = audiences(config, store, rules, stream)
        try:
            log.info("profile builder following the log", extra={"events": builder.count, "store": config.store})
            if once:
                builder.catch_up(keep_going)
            else:
                builder.run(keep_going)
            return builder.stats
        finally:
            builder.close()
            if builder.engage.backfill is not None:
                builder.engage.backfill.reader.close()
    finally:
        store.close()


def audiences(config, store, rules: Rules, stream):
    """The live evaluation of audiences and computed traits (``engage/audiences/live.py``), with
    its backfill reading the log as the builder does."""
    from collector.engage.audiences.backfill import CHUNK
    from collector.engage.audiences.live import Live
    from collector.engage.definitions import folder

    def reader(cursor: dict) -> Builder:
        source = Builder(store, Path(config.data_dir), rules, batch=CHUNK, checkpoint="engage-backfill", stream=stream)
        source.reader.cursor = cursor
        return source

    return Live(store, folder=folder(config), reader=reader, checkpoint=checkpoint_name(config))


_running: set[int] = set()  # the pids of this process's builder processes


def pass_on(number: int) -> None:
    """Send a signal to this process's builder (SIGHUP: it reads the engage definitions again)."""
    for pid in sorted(_running):
        try:
            os.kill(pid, number)
        except ProcessLookupError:
            pass


def builder_process(config, parent: int) -> None:
    """The body of the collector's builder process (spawned: a fresh interpreter)."""
    from collector.engage.audiences import live
    from collector.logs import setup_logging
    from collector.serve.runtime import die_with

    stopped: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, frame: stopped.append(number))
    signal.signal(signal.SIGHUP, lambda number, frame: live.look_now())
    signal.pthread_sigmask(signal.SIG_SETMASK, set())  # a worker's mask survives the exec
    die_with(parent)
    os.nice(NICE)
    setup_logging(config.log_format)
    fd = take_lock(Path(config.data_dir))
    if fd is None:  # another worker's builder took it first
        raise SystemExit(LOCKED_OUT)
    try:
        follow(config, Yielding(lambda: not stopped, parent))
    finally:
        os.close(fd)


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
            _running.add(process.pid)
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
                _running.discard(process.pid)
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
