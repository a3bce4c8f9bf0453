"""Processes beside the collector, one per host: the profile builder, the destinations process.

A companion is a process of its own (Python runs one thread at a time: a thread would take its
time from ingest; a process takes an idle core), started, watched and stopped by the serving
process::

    BUILDER = Companion("profiles", builder_process, "the profile builder")
    app.cleanup_ctx.append(BUILDER.context(config))   # for as long as the app runs
    BUILDER.pass_on(signal.SIGHUP)                    # a signal to it (read your files again)

    collector (event loop) ── spawn ──▶ companion: child_setup, hold the lock, work, exit with the collector
              └ it exited?  start another after RETRY_FAILED s; at shutdown SIGTERM, STOP_TIMEOUT s, SIGKILL

The body holds ``<data_dir>/.locks/<lock>.lock`` while it runs (``take_lock``): with ``--workers N``
each worker starts one only when the lock is free, and a body that finds it taken exits
``LOCKED_OUT`` (another worker's started first), so there is one per host. ``child_setup`` is what
every body does first: the signal mask a worker's exec left cleared, SIGTERM from Linux when its
collector dies, and a lower priority (``NICE``): on a busy machine ingest comes first.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

from collector.log.layout import LOCK_DIR
from collector.log.segments import try_lock

log = logging.getLogger("intilery.serve")

RETRY_LOCK = 5.0  # seconds between a worker's looks at a lock another worker's companion holds
RETRY_FAILED = 5.0  # seconds before a companion that exited (a full disk, a broken database) is started again
STOP_TIMEOUT = 30.0  # seconds a companion has to finish the work in hand at shutdown before SIGKILL
NICE = 10  # the companions' priority below the collector's: ingest first when cores are short
LOCKED_OUT = 3  # a companion's exit code when another process holds its lock


def take_lock(data_dir: Path, name: str) -> int | None:
    """``<data_dir>/.locks/<name>.lock`` (a file descriptor held open), or None when another process has it."""
    (Path(data_dir) / LOCK_DIR).mkdir(parents=True, exist_ok=True)
    return try_lock(Path(data_dir), name)


def child_setup(parent: int) -> None:
    """What a companion's body does first (spawned: a fresh interpreter)."""
    from collector.serve.runtime import die_with

    signal.pthread_sigmask(signal.SIG_SETMASK, set())  # a worker's mask survives the exec
    die_with(parent)
    os.nice(NICE)


class Companion:
    """One kind of companion: its lock's name, its body ``target(config, parent_pid)``, its name in the log."""

    def __init__(self, lock: str, target: Callable, what: str) -> None:
        self.lock, self.target, self.what = lock, target, what
        self.running: set[int] = set()  # the pids of this process's companions of this kind

    def pass_on(self, number: int) -> None:
        """Send a signal to this process's companion of this kind, if it has one."""
        for pid in sorted(self.running):
            try:
                os.kill(pid, number)
            except ProcessLookupError:
                pass

    def context(self, config):
        """An ``app.cleanup_ctx`` entry running the companion for as long as the app runs."""

        async def context(app) -> AsyncIterator[None]:
            stop = asyncio.Event()
            task = asyncio.create_task(self.supervise(config, stop))
            yield
            stop.set()
            await task

        return context

    async def supervise(self, config, stop: asyncio.Event) -> None:
        """Start the companion when the host has none, watch it, stop it when ``stop`` is set."""
        spawn = multiprocessing.get_context("spawn")
        loop = asyncio.get_running_loop()
        data_dir = Path(config.data_dir)
        while not stop.is_set():
            rest = RETRY_LOCK
            if self._lock_is_free(data_dir):
                process = spawn.Process(target=self.target, args=(config, os.getpid()), name=f"intilery-{self.lock}")
                process.start()
                self.running.add(process.pid)
                exited = loop.create_future()
                loop.add_reader(process.sentinel, lambda: exited.done() or exited.set_result(None))
                stopping = asyncio.ensure_future(stop.wait())
                try:
                    await asyncio.wait([exited, stopping], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stopping.cancel()
                    if not exited.done():  # shutting down: the work in hand is finished and committed
                        process.terminate()
                        await asyncio.to_thread(process.join, STOP_TIMEOUT)
                        if process.exitcode is None:
                            log.error(f"{self.what} did not stop in time; killing it")
                            process.kill()
                    loop.remove_reader(process.sentinel)
                    await asyncio.to_thread(process.join)
                    self.running.discard(process.pid)
                if stop.is_set():
                    return
                if process.exitcode != LOCKED_OUT:
                    log.warning(f"{self.what} exited; starting another", extra={"exit": process.exitcode,
                                                                                  "restart_in": RETRY_FAILED})  # fmt: skip
                    rest = RETRY_FAILED
            try:
                await asyncio.wait_for(stop.wait(), rest)
            except asyncio.TimeoutError:
                pass

    def _lock_is_free(self, data_dir: Path) -> bool:
        fd = take_lock(data_dir, self.lock)
        if fd is None:
            return False
        os.close(fd)
        return True


def run_holding(config, lock: str, main: Callable[[], Awaitable[int]]) -> int:
    """A companion's work (``intilery destinations run``, ``journeys run``): ``main()`` on a new event
    loop while this process holds ``lock``; taken by another process: a sentence, exit 1."""
    fd = take_lock(Path(config.data_dir), lock)
    if fd is None:
        raise SystemExit(f"intilery: another process holds {config.data_dir}/.locks/{lock}.lock")
    try:
        return asyncio.run(main())
    finally:
        os.close(fd)


async def serve_reloading(load: Callable[[], Any], serve: Callable[[asyncio.Event, Any], Awaitable[Any]], what: str) -> int:
    """``serve(stop, definitions)`` until SIGTERM or SIGINT; on SIGHUP the files are read again
    (``load``, raising DefinitionError on a mistake): the new definitions take over once the work in
    hand is done, and a mistake keeps the ones in force, said in the log. A mistake at start: exit."""
    from collector.engage.definitions import DefinitionError

    try:
        current = load()
    except DefinitionError as exc:
        raise SystemExit("intilery: " + "\nintilery: ".join(exc.problems)) from None
    loop = asyncio.get_running_loop()
    while True:
        stop, reload = asyncio.Event(), []
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: (reload.append(1), stop.set()))
        await serve(stop, current)
        if not reload:
            return 0
        try:
            current = load()
            log.info(f"{what} read again", extra={what: len(current)})
        except DefinitionError as exc:
            log.error(f"the {what}' files have mistakes: the ones in force are kept", extra={"problems": exc.problems})
