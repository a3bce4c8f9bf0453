"""What runs inside every collector process (and ``intilery privacy``): the shared state kept in step.

Every process that takes events holds ``data/regulations/acks/<instance>.ack`` (flock'ed for its
life; a file whose lock is free is a process that is gone) and, every ``TICK`` seconds:

- reloads the suppression list when it changed, and writes the version it now has into its ack;
- closes its open segments when ``data/regulations/rotate`` asks for a newer rotation than it
  did last (``FileStore.rotate_all``), and writes that rotation into its ack.

So ``wait_acks(data_dir, list=v)`` means "every running collector drops the person's events
from now on" (the 202 of a suppression waits for it), and ``rotate_everywhere`` means "no open
segment holds anything received before now". One process of the host runs the jobs: the one
that holds ``.locks/regulations.lock`` (the others retry every few seconds).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import socket
import time
from pathlib import Path
from typing import AsyncIterator

import orjson

from collector.log.layout import LOCK_DIR
from collector.log.segments import make_dirs, try_lock
from collector.privacy.erase import Context, Job
from collector.privacy.regulations import Regulations
from collector.privacy.suppression import Suppression, directory_of
from collector.profiles.rules import Rules

log = logging.getLogger("intilery.privacy")

TICK = 0.2  # seconds between looks at the shared files
ROTATE_FILE = "rotate"
ACKS = "acks"
ACK_WAIT = 60.0  # seconds a rotation or a list change waits for every running collector
RETRY_JOB = 5.0  # seconds before a job that raised runs again
JOB_LOCK = "regulations"


def open_profiles(config):
    """A function opening the profile store of ``config`` (None when there is no database yet)."""

    def opener():
        from collector.profiles.service import db_target, open_store

        target = db_target(config)
        if not str(target).startswith("postgres") and not Path(target).is_file():
            return None
        return open_store(target)

    return opener


# --- the acknowledgements --------------------------------------------------------------------------
class Ack:
    """This process's ack file, flock'ed while it lives."""

    def __init__(self, data_dir: Path, name: str) -> None:
        directory = directory_of(data_dir) / ACKS
        make_dirs(directory)
        self.path = directory / f"{name}.ack"
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        self.state = {"list": -1, "rotated": -1}

    def write(self, **state: int) -> None:
        if {**self.state, **state} == self.state and os.fstat(self.fd).st_size:
            return
        self.state.update(state)
        data = orjson.dumps(self.state).ljust(63) + b"\n"  # one fixed-size write: read whole or not at all
        os.pwrite(self.fd, data, 0)

    def close(self) -> None:
        os.close(self.fd)
        self.path.unlink(missing_ok=True)


def live_acks(data_dir: Path) -> dict[str, dict]:
    """The ack of every running process (the files of gone ones are removed)."""
    found = {}
    for path in sorted((directory_of(data_dir) / ACKS).glob("*.ack")):
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # held: alive
                text = os.pread(fd, 64, 0).strip()
                found[path.stem] = orjson.loads(text) if text else {"list": -1, "rotated": -1}
            else:
                path.unlink(missing_ok=True)
        finally:
            os.close(fd)
    return found


def wait_acks(data_dir: Path, what: str, at_least: int, timeout: float = ACK_WAIT) -> list[str]:
    """Wait until every running process acknowledged ``what`` (``list``/``rotated``) ≥ ``at_least``;
    the names of those that did not within ``timeout`` (empty: all did)."""
    deadline = time.monotonic() + timeout
    while True:
        behind = [name for name, ack in live_acks(data_dir).items() if ack.get(what, -1) < at_least]
        if not behind or time.monotonic() > deadline:
            return behind
        time.sleep(TICK / 2)


def rotate_everywhere(data_dir: Path, timeout: float = ACK_WAIT) -> None:
    """Ask every running collector to close its open segments, and wait until all did."""
    path = directory_of(data_dir) / ROTATE_FILE
    make_dirs(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        text = os.pread(fd, 32, 0).strip()
        epoch = int(text) + 1 if text.isdigit() else 1
        os.pwrite(fd, f"{epoch:<20d}\n".encode(), 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    behind = wait_acks(data_dir, "rotated", epoch, timeout)
    if behind:
        raise TimeoutError(f"{len(behind)} collector(s) did not close their segments within {timeout:.0f}s")


def rotation_asked(data_dir: Path) -> int:
    try:
        text = (directory_of(data_dir) / ROTATE_FILE).read_text().strip()
    except FileNotFoundError:
        return 0
    return int(text) if text.isdigit() else 0


def context_of(config, suppression: Suppression, data_dir: Path | None = None) -> Context:
    """The erase job's context for a configuration (the NATS stream when the store is NATS)."""
    stream = None
    if config.store == "nats":
        from collector.privacy.stream import StreamEraser

        stream = StreamEraser(config)
    return Context(data_dir=Path(data_dir or config.data_dir), suppression=suppression, rules=Rules.from_config(config),
                   profiles=open_profiles(config), rotate=lambda: rotate_everywhere(Path(data_dir or config.data_dir)),
                   stream=stream)  # fmt: skip


def run_pending(config, suppression: Suppression) -> int:
    """Run every request not finished yet (the caller holds the job lock); how many ran."""
    regulations = Regulations(suppression.dir)
    ran = 0
    for record in regulations.pending():
        Job(regulations, record, context_of(config, suppression)).run()
        ran += 1
    return ran


# --- inside the collector ----------------------------------------------------------------------------
class Privacy:
    """The per-process part: created with the app, started after its store."""

    def __init__(self, config, store) -> None:
        self.config, self.store = config, store
        self.data_dir = Path(config.data_dir)
        self.suppression = Suppression(self.data_dir, Rules.from_config(config))
        self.regulations = Regulations(self.suppression.dir)
        self.ack: Ack | None = None
        self.rotated = 0
        self._job_lock: int | None = None
        self._job: asyncio.Task | None = None
        self._retry_at = 0.0

    async def context(self, app) -> AsyncIterator[None]:
        """An ``app.cleanup_ctx`` entry (after the store's: started after it, stopped before it)."""
        name = getattr(self.store, "instance", None) if hasattr(self.store, "lock") else None
        self.ack = Ack(self.data_dir, name or f"{socket.gethostname()}-{os.getpid()}")
        self.rotated = rotation_asked(self.data_dir)  # a store just started has no segment from before
        self.suppression.refresh()
        self.ack.write(list=self.suppression.version, rotated=self.rotated)
        stop = asyncio.Event()
        task = asyncio.create_task(self._follow(stop), name="privacy")
        yield
        stop.set()
        await task
        if self._job is not None:
            await asyncio.gather(self._job, return_exceptions=True)
        if self._job_lock is not None:
            os.close(self._job_lock)
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
        self.suppression.refresh()
        asked = rotation_asked(self.data_dir)
        if asked > self.rotated and hasattr(self.store, "rotate_all"):
            await self.store.rotate_all()
        self.rotated = max(self.rotated, asked)
        self.ack.write(list=self.suppression.version, rotated=self.rotated)
        if self._job is None and time.monotonic() >= self._retry_at and self.regulations.pending():
            if self._job_lock is None:
                make_dirs(self.data_dir / LOCK_DIR)
                self._job_lock = try_lock(self.data_dir, JOB_LOCK)
            if self._job_lock is not None:
                self._job = asyncio.create_task(asyncio.to_thread(run_pending, self.config, self.suppression))
                self._job.add_done_callback(self._job_done)

    def _job_done(self, task: asyncio.Task) -> None:
        self._job = None
        if task.cancelled() or task.exception() is not None:
            self._retry_at = time.monotonic() + RETRY_JOB
