"""The builder beside the collector (``intilery serve`` and ``demo``; ``--no-profiles``), and the
one loop that follows the log into the profile database (``follow``, also ``intilery profiles``).

The collector runs the builder as a process of its own, one per host (``BUILDER``, a companion:
``serve/companions.py`` starts, watches and stops it), at a lower priority so that on a busy
machine ingest comes first, pausing between batches while its core is contended (``Yielding``).
It is one more consumer of the log, never a step of a request. It holds
``<data_dir>/.locks/profiles.lock`` while it runs, so an ``intilery profiles`` on the same data
directory is refused; it stops after the batch in hand (committed, cursor included).

The profile database a ``--profiles-db`` names, and the host's lock, are ``database.py``'s; the
pauses on a contended core are ``yielding.py``'s.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import Callable

from collector.profiles.builder import Builder
from collector.profiles.database import LOCK, checkpoint_name, db_target, open_store, take_lock
from collector.profiles.rules import Rules
from collector.profiles.yielding import Yielding
from collector.serve.companions import LOCKED_OUT, Companion, child_setup

log = logging.getLogger("intilery.profiles")


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


def builder_process(config, parent: int) -> None:
    """The body of the collector's builder process (spawned: a fresh interpreter)."""
    from collector.engage.audiences import live
    from collector.logs import setup_logging

    stopped: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, frame: stopped.append(number))
    signal.signal(signal.SIGHUP, lambda number, frame: live.look_now())
    child_setup(parent)
    setup_logging(config.log_format)
    fd = take_lock(Path(config.data_dir))
    if fd is None:  # another worker's builder took it first
        raise SystemExit(LOCKED_OUT)
    try:
        follow(config, Yielding(lambda: not stopped, parent))
    finally:
        os.close(fd)


BUILDER = Companion(LOCK, builder_process, "the profile builder")  # beside serve and demo (serve/companions.py)
builder_context = BUILDER.context
