"""What runs inside every collector process (and ``intilery privacy``): the shared state kept in step.

Every collector process holds an ack file of ``collector.log.rotation`` (flock'ed for its life)
and, every ``TICK`` seconds:

- reloads the suppression list when it changed, and reports the version it now has (``list``);
- closes its open segments when a newer rotation was asked for (``rotation.rotate_if_asked``).

So ``rotation.wait_acks(data_dir, "list", v)`` means "every running collector drops the person's
events from now on" (the 202 of a suppression waits for it), and ``rotation.rotate_everywhere``
means "no open segment holds anything received before now". One process of the host runs the
jobs: the one that holds ``.locks/regulations.lock`` (the others try again at every tick).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import AsyncIterator

from collector.log import rotation
from collector.log.layout import LOCK_DIR, iso_ms
from collector.log.segments import make_dirs, try_lock
from collector.engage.journeys.privacy import eraser as outbox_eraser  # the outbox, and the journeys' runs
from collector.privacy.erase import Context, Job
from collector.privacy.regulations import Regulations
from collector.privacy.subjects import resolver
from collector.privacy.suppression import Suppression
from collector.profiles.rules import Rules
from collector.ingest.validate import parse_timestamp

log = logging.getLogger("intilery.privacy")

TICK = rotation.TICK  # seconds between looks at the shared files
PULL_EVERY = 1.0  # seconds between looks at the NATS bucket of the list (--store nats)
RETRY_JOB = 5.0  # seconds before a job that raised runs again
JOB_LOCK = "regulations"


def open_profiles(config):
    """A function opening the profile store of ``config``: None when there is none, or when it is
    of another version (a privacy job never migrates it: that is the builder's)."""
    from collector.privacy.subjects import open_current
    from collector.profiles.database import db_target, open_store

    return lambda: open_current(db_target(config), open_store)


def context_of(config, suppression: Suppression, stopped=lambda: False) -> Context:
    """The erase job's context for a configuration (the NATS stream when the store is NATS)."""
    stream = archives = None
    if config.store == "nats":
        from collector.privacy.archives import Archives
        from collector.privacy.nats_eraser import StreamEraser

        stream, archives = StreamEraser(config), Archives(config)
    data_dir = Path(config.data_dir)
    return Context(data_dir=data_dir, suppression=suppression, rules=Rules.from_config(config),
                   profiles=open_profiles(config), resolve=resolver(config, stopped),
                   rotate=lambda: rotation.rotate_everywhere(data_dir, stopped=stopped),
                   stream=stream, archives=archives, stopped=stopped, outbox=outbox_eraser(config))  # fmt: skip


def shared_suppression(config) -> Suppression:
    """The suppression list of ``config``: the data directory's file, kept in step with the NATS
    bucket when the store is NATS (collectors on other hosts)."""
    suppression = Suppression(Path(config.data_dir), Rules.from_config(config))
    if config.store == "nats":
        from collector.privacy.shared_list import SharedList

        suppression.remote = SharedList(config)
    return suppression


def run_pending(config, suppression: Suppression, stopped=lambda: False) -> int:
    """Run every request not finished yet (the caller holds the job lock); how many ran."""
    regulations = Regulations(suppression.dir)
    ran = 0
    for record in regulations.pending(due=True):
        if stopped():
            break
        Job(regulations, record, context_of(config, suppression, stopped)).run()
        ran += 1
    return ran


# --- inside the collector ----------------------------------------------------------------------------
class Privacy:
    """The per-process part: created with the app, started after its store."""

    def __init__(self, config, store) -> None:
        self.config, self.store = config, store
        self.data_dir = Path(config.data_dir)
        self.suppression = shared_suppression(config)
        self.regulations = Regulations(self.suppression.dir)
        self.ack: rotation.Ack | None = None
        self._puller = None if self.suppression.remote is None else type(self.suppression.remote)(config)
        self._pulled_at = 0.0
        self._pull_failed = False
        self._pull_error: str | None = None  # the kind of failure (an exception's class name: no text)
        self._read_at: float | None = None  # when the bucket was last read
        self._job_lock: int | None = None
        self._job: asyncio.Task | None = None
        self._retry_at = 0.0
        self._stopping = threading.Event()  # read by the job's thread between files
        self._seen: tuple | None = None  # the regulations directory when it last had nothing due
        self._next_due = float("inf")  # (monotonic) when the earliest waiting request is due again
        self.before_rotation: list = []  # called before a rotation is acknowledged (the console forgets the erased)

    async def context(self, app) -> AsyncIterator[None]:
        """An ``app.cleanup_ctx`` entry (after the store's: started after it, stopped before it)."""
        name = getattr(self.store, "instance", None) if hasattr(self.store, "lock") else None
        self.ack = rotation.Ack(self.data_dir, name or f"{socket.gethostname()}-{os.getpid()}")
        self.suppression.refresh()
        self.ack.write(list=self.suppression.version)
        stop = asyncio.Event()
        task = asyncio.create_task(self._follow(stop), name="privacy")
        yield
        stop.set()
        self._stopping.set()
        await task
        if self._job is not None:
            await asyncio.gather(self._job, return_exceptions=True)
        if self._job_lock is not None:
            os.close(self._job_lock)
        if self._puller is not None:
            await self._puller.close()
        self.ack.close()

    async def _follow(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.tick()
            except Exception:  # noqa: BLE001 - logged; the next tick tries again
                log.exception("privacy tick failed")
            try:
                await asyncio.wait_for(stop.wait(), TICK)
            except asyncio.TimeoutError:
                pass

    async def tick(self) -> None:
        if self._puller is not None and time.monotonic() - self._pulled_at >= PULL_EVERY:
            self._pulled_at = time.monotonic()
            await self._pull()
        self.suppression.refresh()
        self.ack.write(list=self.suppression.version)
        await rotation.rotate_if_asked(self.store, self.ack, self.data_dir, before=self._before_rotation)
        if self._job is None and time.monotonic() >= self._retry_at and self._anything_pending():
            if self._job_lock is None:
                make_dirs(self.data_dir / LOCK_DIR)
                self._job_lock = try_lock(self.data_dir, JOB_LOCK)
            if self._job_lock is not None:
                self._job = asyncio.create_task(
                    asyncio.to_thread(run_pending, self.config, self.suppression, self._stopping.is_set)
                )
                self._job.add_done_callback(self._job_done)

    def _before_rotation(self) -> None:
        for hook in self.before_rotation:
            try:
                hook()
            except Exception:  # noqa: BLE001 - logged; the console looks again on its own loop, the erasure goes on
                log.exception("a hook before the rotation failed")

    async def _pull(self) -> None:
        """The bucket's salt (kept in the directory first) and a newer list into the local file. When
        the bucket cannot be read, ingest goes on with the last list read (logged once, and ``/readyz``
        says the list is stale, ``shared_list``); the next pull tries again."""
        from collector.privacy.shared_list import keep_salt, kept_salt

        suppression = self.suppression
        try:
            candidate = suppression._salt or await asyncio.to_thread(kept_salt, suppression.dir)
            if candidate is None:  # the bucket's salt when it has one; else this new one becomes it
                candidate = os.urandom(32)
            salt = await asyncio.wait_for(self._puller.salt(candidate), PULL_EVERY * 5)
            await asyncio.to_thread(keep_salt, suppression.dir, salt)  # before any list hashed with it
            suppression.adopt_salt(salt)
            hashes = await asyncio.wait_for(self._puller.fetch(), PULL_EVERY * 5)
        except Exception as exc:  # noqa: BLE001 - NATS away, or the bucket denied: the last list stays in force
            self._pull_error = type(exc).__name__
            if not self._pull_failed:
                log.warning("the shared suppression list cannot be read (NATS bucket INTILERY_PRIVACY): ingest goes on "
                            "with the last list this collector read (%d hashes); /readyz says it is stale: %s",
                            len(suppression.hashes), self._pull_error)  # fmt: skip
            self._pull_failed = True
            return
        if self._pull_failed:
            log.info("the shared suppression list can be read again")
        self._pull_failed, self._pull_error, self._read_at = False, None, time.time()
        if hashes is not None and hashes != set(suppression.hashes):
            await asyncio.to_thread(suppression.replace, hashes)

    def shared_list(self) -> dict | None:
        """What ``/readyz`` says of the shared list (None without NATS): stale until read, and while
        the bucket cannot be read."""
        if self._puller is None:
            return None
        stale = self._read_at is None or self._pull_failed
        return {"stale": stale, "hashes": len(self.suppression.hashes), "version": self.suppression.version,
                "lastRead": iso_ms(self._read_at) if self._read_at is not None else None,
                **({"reason": self._pull_error} if stale and self._pull_error else {})}  # fmt: skip

    def _anything_pending(self) -> bool:
        """Whether a request is due to run. The records are read only when the directory changed
        since the last look, or when the earliest retry of a waiting request comes."""
        try:
            st = os.stat(self.regulations.dir)
        except FileNotFoundError:
            return False
        stamp = (st.st_ino, st.st_mtime_ns)
        if stamp == self._seen and time.monotonic() < self._next_due:
            return False
        self._seen, self._next_due = stamp, float("inf")
        pending = self.regulations.pending()
        if self.regulations.due(pending):
            self._seen = None
            return True
        if pending:  # waiting for their retries: look again at the earliest
            earliest = min(parse_timestamp(r["nextAttemptAt"], "nextAttemptAt") for r in pending)
            self._next_due = time.monotonic() + max(0.0, earliest - time.time())
        return False

    def _job_done(self, task: asyncio.Task) -> None:
        self._job = None
        if task.cancelled() or task.exception() is not None:
            self._retry_at = time.monotonic() + RETRY_JOB
