"""Closing every open segment of a data directory on request, across processes (for an erasure).

An erasure rewrites closed segments only (``rewrite.py``), so it first asks every process that
writes segments into the directory (collectors, ``intilery archive``) to close theirs. The
protocol is files, so it works across workers and commands::

    <data_dir>/.rotation/asked          a counter: the newest rotation asked for
    <data_dir>/.rotation/<name>.ack     one per running process, flock'ed for its life: the
                                        newest rotation it did, and any other state it reports

``rotate_everywhere(data_dir)`` bumps the counter and waits until every running process has
acknowledged it; a process does its part with ``follow`` (or its own loop calling ``due`` and
``Ack.write``). An ack file whose lock is free belongs to a process that is gone: it is removed.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from pathlib import Path

import orjson

from collector.log.segments import make_dirs

DIRECTORY = ".rotation"
ASKED = "asked"
TICK = 0.2  # seconds between looks at the counter
WAIT = 60.0  # seconds ``rotate_everywhere`` waits for every process


class Ack:
    """This process's ack file, flock'ed while it lives."""

    def __init__(self, data_dir: Path, name: str) -> None:
        directory = Path(data_dir) / DIRECTORY
        make_dirs(directory)
        self.path = directory / f"{name}.ack"
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        self.state: dict[str, int] = {"rotated": asked(data_dir)}  # a process just started has no older segment open
        self._written: bytes = b""

    @property
    def rotated(self) -> int:
        return self.state["rotated"]

    def write(self, **state: int) -> None:
        self.state.update(state)
        data = orjson.dumps(self.state).ljust(127) + b"\n"  # one small write at offset 0: read whole
        if data != self._written:
            os.pwrite(self.fd, data, 0)
            self._written = data

    def close(self) -> None:
        self.path.unlink(missing_ok=True)
        os.close(self.fd)


def live_acks(data_dir: Path) -> dict[str, dict]:
    """The state of every running process (the ack files of gone ones are removed)."""
    found = {}
    for path in sorted((Path(data_dir) / DIRECTORY).glob("*.ack")):
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # held: alive
                text = os.pread(fd, 128, 0).strip()
                found[path.stem] = orjson.loads(text) if text else {}
            else:
                path.unlink(missing_ok=True)
        finally:
            os.close(fd)
    return found


class Stopped(Exception):
    """The waiting process is shutting down."""


def wait_acks(data_dir: Path, what: str, at_least: int, timeout: float = WAIT, stopped=lambda: False) -> list[str]:
    """Wait until every running process that reports ``what`` reports it ≥ ``at_least``; those that did
    not in time. (Every process reports ``rotated``; collectors also report their suppression ``list``.)"""
    deadline = time.monotonic() + timeout
    while True:
        behind = [name for name, state in live_acks(data_dir).items() if state.get(what, at_least) < at_least]
        if not behind or time.monotonic() > deadline:
            return behind
        if stopped():
            raise Stopped("stopped while waiting for other processes")
        time.sleep(TICK / 2)


def asked(data_dir: Path) -> int:
    """The newest rotation asked for (0: none yet)."""
    try:
        text = (Path(data_dir) / DIRECTORY / ASKED).read_text().strip()
    except FileNotFoundError:
        return 0
    return int(text) if text.isdigit() else 0


def rotate_everywhere(data_dir: Path, timeout: float = WAIT, stopped=lambda: False) -> int:
    """Ask every running process to close its open segments and wait until all did; the rotation."""
    path = Path(data_dir) / DIRECTORY / ASKED
    make_dirs(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        text = os.pread(fd, 32, 0).strip()
        rotation = int(text) + 1 if text.isdigit() else 1
        os.pwrite(fd, f"{rotation:<20d}\n".encode(), 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    behind = wait_acks(data_dir, "rotated", rotation, timeout, stopped)
    if behind:
        raise TimeoutError(f"{len(behind)} process(es) did not close their segments within {timeout:.0f}s")
    return rotation


async def rotate_if_asked(store, ack: Ack, data_dir: Path, before=lambda: None) -> None:
    """One look: close the store's open segments when a newer rotation was asked, and say so.
    ``before()`` runs first, after the counter was read (what was written before the rotation
    was asked, an erasure's record, is seen by it)."""
    wanted = asked(data_dir)
    if wanted > ack.rotated:
        before()
        if hasattr(store, "rotate_all"):
            await store.rotate_all()
        ack.write(rotated=wanted)


async def follow(store, data_dir: Path, name: str, stop: asyncio.Event) -> None:
    """Answer rotations for ``store`` until ``stop`` is set (``intilery archive`` runs this)."""
    ack = Ack(data_dir, name)
    ack.write()
    try:
        while not stop.is_set():
            await rotate_if_asked(store, ack, data_dir)
            try:
                await asyncio.wait_for(stop.wait(), TICK)
            except asyncio.TimeoutError:
                pass
    finally:
        ack.close()
