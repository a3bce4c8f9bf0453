"""The journeys process: the runner (``runner.py``) following the log and firing timers, the
database behind one thread::

    intilery journeys run        # until SIGTERM / SIGINT; SIGHUP: reads the files again

It holds ``<data_dir>/.locks/journeys.lock`` while it runs (one per log on a host). Each pass
applies the new events (a batch a transaction) and fires the timers that fell due (one indexed
query); when neither had work it sleeps ``POLL`` s: a timer fires within ``POLL`` s (plus a
transaction) of its moment, and at the first pass after a restart when it fell due while the
process was down.

Beside the collector (``intilery serve`` with profiles on, when ``engage/journeys/`` holds a file)
it is a companion process (``JOURNEYS``), as the profile builder and the destinations process are
(``serve/companions.py``: started when the host has none, started again after it exits).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from collector.engage import definitions as engage
from collector.engage.definitions import DefinitionError
from collector.engage.destinations.sender import Database
from collector.engage.journeys import definitions
from collector.engage.journeys.runner import CURSOR, Runner
from collector.engage.journeys.store import open_journeys
from collector.profiles.database import checkpoint_name, db_target
from collector.profiles.rules import Rules
from collector.serve.companions import LOCKED_OUT, Companion, child_setup, run_holding, serve_reloading

log = logging.getLogger("intilery.journeys")

LOCK = "journeys"
POLL = 0.1  # seconds between passes with nothing to do


def cursor_name(config) -> str:
    return checkpoint_name(config).replace("events", CURSOR, 1)


def load(config) -> dict:
    return definitions.load(engage.folder(config))


def has_journeys(config) -> bool:
    return engage.has_files(config, definitions.FOLDER)


async def serve(config, stop: asyncio.Event, journeys: dict | None = None) -> dict:
    journeys = load(config) if journeys is None else journeys
    store = open_journeys(db_target(config))
    db = Database(store)
    runner = await db(Runner, store, Path(config.data_dir), journeys, name=cursor_name(config),
                      rules=Rules.from_config(config), stream=config if config.store == "nats" else None)  # fmt: skip
    log.info("journeys following the log", extra={"journeys": len(journeys)})
    try:
        while not stop.is_set():
            n = await db(runner.step)
            fired = await db(runner.fire)
            if n or fired:
                continue
            try:
                await asyncio.wait_for(stop.wait(), POLL)
            except asyncio.TimeoutError:
                pass
    finally:
        stop.set()
        await db(runner.close)
        db.close()
        store.close()
    return dict(runner.stats)


def run(config) -> int:
    """``intilery journeys run``: the runner until SIGTERM or SIGINT; SIGHUP: the files read again."""
    return run_holding(config, LOCK, lambda: serve_reloading(lambda: load(config), lambda stop, current: serve(config, stop, current),
                                                             "journeys"))


def process_main(config, parent: int) -> None:
    """The body of the collector's journeys process (spawned: a fresh interpreter)."""
    from collector.logs import setup_logging

    child_setup(parent)
    setup_logging(config.log_format)
    try:
        run(config)
    except SystemExit:
        raise SystemExit(LOCKED_OUT)  # another process has the lock


JOURNEYS = Companion(LOCK, process_main, "the journeys process")  # beside serve (serve/companions.py)


def context(config):
    """An ``app.cleanup_ctx`` entry running the journeys process beside the collector; a mistake in
    the files stops the collector at start (each ``file:line: reason``)."""
    from collector.config import ConfigError

    try:
        load(config)
    except DefinitionError as exc:
        raise ConfigError("the journeys' files have mistakes:\n" + "\n".join(exc.problems)) from None

    return JOURNEYS.context(config)
