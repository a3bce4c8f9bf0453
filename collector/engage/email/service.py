"""The email process: the outbox's ``email`` lane (``sender.py``) sending until SIGTERM / SIGINT::

    intilery email run

It holds ``<data_dir>/.locks/email.lock`` while it runs (one per data directory on a host; hosts
sharing a PostgreSQL profile database share the lane, the outbox's claims keeping them apart).
Beside the collector (``intilery serve`` with profiles on, when ``[email] from`` is set) it is a
companion process (``MAILER``), as the destinations process is (``serve/companions.py``): started
when the host has none, started again after it exits, stopped with SIGTERM at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

from collector.engage import definitions as engage
from collector.serve.companions import LOCKED_OUT, Companion, child_setup, take_lock

log = logging.getLogger("intilery.email")

LOCK = "email"


def has_email(config) -> bool:
    return bool(config.email.from_)


def run(config) -> int:
    fd = take_lock(Path(config.data_dir), LOCK)
    if fd is None:
        raise SystemExit(f"intilery: another process holds {config.data_dir}/.locks/{LOCK}.lock")
    try:
        asyncio.run(_run(config))
        return 0
    finally:
        os.close(fd)


async def _run(config) -> None:
    from collector.engage.destinations.sender import Database
    from collector.engage.email import tokens
    from collector.engage.email.sender import EmailLane
    from collector.engage.outbox.store import open_outbox
    from collector.profiles.database import db_target, open_store

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    db = Database(open_outbox(db_target(config)))
    profiles = await db(open_store, db_target(config), reads_only=True)  # a journey's sends are rendered when sent
    log.info("sending email", extra={"relay": f"{config.email.smtp_host}:{config.email.smtp_port}"})
    try:
        await EmailLane(config.email, db, tokens.secret(config.email, config.data_dir), root=engage.folder(config),
                        profiles=profiles).run(stop)  # fmt: skip
    finally:
        await db(profiles.close)
        await db(db.outbox.close)
        db.close()


def process_main(config, parent: int) -> None:
    """The body of the collector's email process (spawned: a fresh interpreter)."""
    from collector.logs import setup_logging

    child_setup(parent)
    setup_logging(config.log_format)
    try:
        run(config)
    except SystemExit:
        raise SystemExit(LOCKED_OUT)


MAILER = Companion(LOCK, process_main, "the email process")


def context(config):
    return MAILER.context(config)
