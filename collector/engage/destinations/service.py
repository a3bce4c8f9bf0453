"""The destinations process: the filler (log ➜ outbox, ``consumer.py``) and the sender (outbox ➜
webhooks, ``sender.py``) on one event loop, the database behind one thread::

    intilery destinations run        # follows the log and sends until SIGTERM / SIGINT; SIGHUP: reads the files again

It holds ``<data_dir>/.locks/destinations.lock`` while it runs (one filler per log on a host). A
SIGKILL at any point loses nothing: what the filler committed is in the outbox with its cursor,
what was in flight is sent again when its lease ends, with the same webhook-id.

Beside the collector (``intilery serve`` with profiles on, when ``engage/destinations/`` holds a
file) it is a process of its own, as the profile builder is (``profiles/service.py``): started
when the host has none (the lock), watched, started again ``RETRY_FAILED`` s after it exits,
stopped with SIGTERM at shutdown (it finishes the request in hand), SIGTERMed by Linux when its
collector dies, at the builder's lower priority (``NICE``): on a busy machine ingest comes first.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
from pathlib import Path
from typing import AsyncIterator

from collector.engage import definitions as engage
from collector.engage.definitions import DefinitionError
from collector.engage.destinations import definitions
from collector.engage.destinations.consumer import CURSOR, Filler
from collector.engage.destinations.sender import Database, Sender
from collector.engage.outbox.store import open_outbox
from collector.log.segments import try_lock
from collector.log.layout import LOCK_DIR
from collector.profiles.database import checkpoint_name, db_target
from collector.profiles.rules import Rules

log = logging.getLogger("intilery.destinations")

LOCK = "destinations"
POLL = 0.05  # seconds between reads of an idle log: a poll stats a file and takes no lock (the builder's is 0.2)


def cursor_name(config) -> str:
    """The filler's cursor: one per log when the database is shared (as the builder's checkpoint)."""
    return checkpoint_name(config).replace("events", CURSOR, 1)


def take_lock(data_dir: Path) -> int | None:
    (data_dir / LOCK_DIR).mkdir(parents=True, exist_ok=True)
    return try_lock(data_dir, LOCK)


def load(config) -> dict:
    return definitions.load(engage.folder(config))


async def serve(config, stop: asyncio.Event, destinations: dict | None = None, *, on_fill=None) -> dict:
    """Fill and send until ``stop`` is set; the counts."""
    destinations = load(config) if destinations is None else destinations
    outbox = open_outbox(db_target(config))
    db = Database(outbox)
    filler = Filler(outbox, Path(config.data_dir), destinations, name=cursor_name(config), rules=Rules.from_config(config),
                    stream=config if config.store == "nats" else None)  # fmt: skip
    sender = Sender(db, destinations)
    sending = asyncio.create_task(sender.run(stop))
    log.info("destinations following the log", extra={"destinations": len(destinations)})
    try:
        while not stop.is_set():
            n = await db(filler.step)
            if n:
                sender.wake()
                if on_fill is not None:
                    on_fill(n)
                continue
            try:
                await asyncio.wait_for(stop.wait(), POLL)
            except asyncio.TimeoutError:
                pass
    finally:
        stop.set()
        await sending
        await db(filler.close)
        db.close()
        outbox.close()
    return {"filled": {f"{d}/{o}": n for (d, o), n in sorted(filler.stats.items())},
            "sent": {f"{d}/{o}": n for (d, o), n in sorted(sender.stats.items())}}  # fmt: skip


def run(config) -> int:
    """``intilery destinations run``: the process, until SIGTERM or SIGINT."""
    fd = take_lock(Path(config.data_dir))
    if fd is None:
        raise SystemExit(f"intilery: another process holds {config.data_dir}/.locks/{LOCK}.lock")
    try:
        return asyncio.run(_run(config))
    finally:
        os.close(fd)


async def _run(config) -> int:
    """Fill and send until SIGTERM or SIGINT; on SIGHUP read the files again: the new definitions
    take over (every lane stops after the request in hand, then starts again with them), and a
    mistake in them keeps the old ones in force, said in the log."""
    try:
        current = load(config)
    except DefinitionError as exc:
        raise SystemExit("intilery: " + "\nintilery: ".join(exc.problems)) from None
    loop = asyncio.get_running_loop()
    while True:
        stop, reload = asyncio.Event(), []
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: (reload.append(1), stop.set()))
        await serve(config, stop, current)
        if not reload:
            return 0
        try:
            current = load(config)
            log.info("destinations read again", extra={"destinations": len(current)})
        except DefinitionError as exc:
            log.error("the destinations' files have mistakes: the ones in force are kept", extra={"problems": exc.problems})


RETRY_FAILED = 5.0  # seconds before a destinations process that exited is started again
STOP_TIMEOUT = 30.0


def has_destinations(config) -> bool:
    folder = engage.folder(config) / definitions.FOLDER
    return folder.is_dir() and any(p.suffix in (".yaml", ".yml", ".json") for p in folder.iterdir())


_running: set[int] = set()  # the pids of this process's destinations processes


def pass_on(number: int) -> None:
    """Send a signal to this process's destinations process (SIGHUP: it reads the files again)."""
    for pid in sorted(_running):
        try:
            os.kill(pid, number)
        except ProcessLookupError:
            pass


def process_main(config, parent: int) -> None:
    """The body of the collector's destinations process (spawned: a fresh interpreter)."""
    from collector.logs import setup_logging
    from collector.serve.runtime import die_with

    from collector.profiles.service import NICE

    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    die_with(parent)
    os.nice(NICE)  # as the profile builder: on a busy machine ingest comes first
    setup_logging(config.log_format)
    try:
        run(config)
    except SystemExit:
        raise SystemExit(3)  # another process has the lock


async def supervise(config, stop: asyncio.Event) -> None:
    """Start the destinations process when the host has none, watch it, stop it when ``stop`` is set."""
    spawn = multiprocessing.get_context("spawn")
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        fd = take_lock(Path(config.data_dir))
        if fd is None:  # another worker's process has it
            try:
                await asyncio.wait_for(stop.wait(), RETRY_FAILED)
            except asyncio.TimeoutError:
                pass
            continue
        os.close(fd)
        process = spawn.Process(target=process_main, args=(config, os.getpid()), name="intilery-destinations")
        process.start()
        _running.add(process.pid)
        exited = loop.create_future()
        loop.add_reader(process.sentinel, lambda: exited.done() or exited.set_result(None))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait([exited, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not exited.done():
                process.terminate()
                await asyncio.to_thread(process.join, STOP_TIMEOUT)
                if process.exitcode is None:
                    process.kill()
            loop.remove_reader(process.sentinel)
            await asyncio.to_thread(process.join)
            _running.discard(process.pid)
        if stop.is_set():
            return
        if process.exitcode != 3:
            log.warning("the destinations process exited; starting another", extra={"exit": process.exitcode})
        try:
            await asyncio.wait_for(stop.wait(), RETRY_FAILED)
        except asyncio.TimeoutError:
            pass


def context(config):
    """An ``app.cleanup_ctx`` entry running the destinations process for as long as the app runs.
    A mistake in the files stops the collector at start (``ConfigError``: each ``file:line: reason``)."""
    from collector.config import ConfigError

    try:
        load(config)
    except DefinitionError as exc:
        raise ConfigError("the destinations' files have mistakes:\n" + "\n".join(exc.problems)) from None

    async def running(app) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(supervise(config, stop))
        yield
        stop.set()
        await task

    return running
