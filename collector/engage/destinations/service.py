"""The destinations process: the filler (log ➜ outbox, ``consumer.py``) and the sender (outbox ➜
webhooks, ``sender.py``) on one event loop, the database behind one thread::

    intilery destinations run        # follows the log and sends until SIGTERM / SIGINT

It holds ``<data_dir>/.locks/destinations.lock`` while it runs (one filler per log on a host). A
SIGKILL at any point loses nothing: what the filler committed is in the outbox with its cursor,
what was in flight is sent again when its lease ends, with the same webhook-id.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

from collector.engage import definitions as engage
from collector.engage.destinations import definitions
from collector.engage.destinations.consumer import CURSOR, Filler
from collector.engage.destinations.sender import POLL, Database, Sender
from collector.engage.outbox.store import open_outbox
from collector.log.segments import try_lock
from collector.log.layout import LOCK_DIR
from collector.profiles.database import checkpoint_name, db_target
from collector.profiles.rules import Rules

log = logging.getLogger("intilery.destinations")

LOCK = "destinations"


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
    filler = Filler(outbox, Path(config.data_dir), destinations, name=cursor_name(config), rules=Rules.from_config(config))
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
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(config, stop)
    return 0
