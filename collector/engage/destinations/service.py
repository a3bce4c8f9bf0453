"""The destinations process: the filler (log ➜ outbox, ``consumer.py``) and the sender (outbox ➜
webhooks, ``sender.py``) on one event loop, the database behind one thread::

    intilery destinations run        # follows the log and sends until SIGTERM / SIGINT; SIGHUP: reads the files again

It holds ``<data_dir>/.locks/destinations.lock`` while it runs (one filler per log on a host). A
SIGKILL at any point loses nothing: what the filler committed is in the outbox with its cursor,
what was in flight is sent again when its lease ends, with the same webhook-id.

Beside the collector (``intilery serve`` with profiles on, when ``engage/destinations/`` holds a
file) it is a companion process (``SENDER``), as the profile builder is: ``serve/companions.py``
starts it when the host has none (the lock), watches it, starts it again after it exits, stops it
with SIGTERM at shutdown (it finishes the request in hand), at the builder's lower priority.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from collector.engage import definitions as engage
from collector.engage.definitions import DefinitionError
from collector.engage.destinations import definitions
from collector.engage.destinations.consumer import CURSOR, Filler
from collector.engage.destinations.sender import Database, Sender
from collector.engage.outbox.store import open_outbox
from collector.profiles.database import checkpoint_name, db_target
from collector.profiles.rules import Rules
from collector.serve.companions import LOCKED_OUT, Companion, child_setup, run_holding, serve_reloading

log = logging.getLogger("intilery.destinations")

LOCK = "destinations"
POLL = 0.05  # seconds between reads of an idle log: a poll stats a file and takes no lock (the builder's is 0.2)


def cursor_name(config) -> str:
    """The filler's cursor: one per log when the database is shared (as the builder's checkpoint)."""
    return checkpoint_name(config).replace("events", CURSOR, 1)


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
    """``intilery destinations run``: the filler and the sender until SIGTERM or SIGINT; SIGHUP: the
    files read again (every lane stops after the request in hand, then starts with the new ones)."""
    return run_holding(config, LOCK, lambda: serve_reloading(lambda: load(config), lambda stop, current: serve(config, stop, current),
                                                             "destinations"))


def has_destinations(config) -> bool:
    return engage.has_files(config, definitions.FOLDER)


def process_main(config, parent: int) -> None:
    """The body of the collector's destinations process (spawned: a fresh interpreter)."""
    from collector.logs import setup_logging

    child_setup(parent)  # as the profile builder: on a busy machine ingest comes first
    setup_logging(config.log_format)
    try:
        run(config)
    except SystemExit:
        raise SystemExit(LOCKED_OUT)  # another process has the lock


SENDER = Companion(LOCK, process_main, "the destinations process")  # beside serve (serve/companions.py)



def context(config):
    """An ``app.cleanup_ctx`` entry running the destinations process for as long as the app runs.
    A mistake in the files stops the collector at start (``ConfigError``: each ``file:line: reason``)."""
    from collector.config import ConfigError

    try:
        load(config)
    except DefinitionError as exc:
        raise ConfigError("the destinations' files have mistakes:\n" + "\n".join(exc.problems)) from None

    return SENDER.context(config)
