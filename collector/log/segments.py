"""Segment files on disk: naming, the instance lock, compression and crash recovery.

Names and partitions are ``layout``'s. Everything here is synchronous; the store runs it in its own threads.
"""

from __future__ import annotations

import errno
import fcntl
import gzip
import logging
import os
import re
import shutil
import socket
from pathlib import Path
from typing import Iterator

from collector.log.layout import LOCK_DIR, parse_name

log = logging.getLogger("intilery.store")

def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path) -> None:
    """mkdir -p that fsyncs each parent it created, so the new entry survives a crash."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:
            continue
        fsync_dir(directory.parent)


class InstanceLock:
    """A unique instance name held with flock for the life of the process."""

    def __init__(self, data_dir: Path, prefix: str | None = None) -> None:
        host = re.sub(r"[^A-Za-z0-9]", "", prefix or socket.gethostname())[:32] or "host"
        lock_dir = data_dir / LOCK_DIR
        make_dirs(lock_dir)
        for n in range(10_000):
            name = f"{host}_{n}"
            fd = os.open(lock_dir / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self.name, self._fd = name, fd
            return
        raise RuntimeError(f"no free instance name under {lock_dir}")

    def next_seq(self) -> int:
        """The next segment number, remembered (and fsynced) in the lock file across restarts.

        The counter is a hint that saves probing: the caller still skips any number whose
        segment exists in any form (``taken``), since a lost ``.locks/`` starts it again at 1.
        """
        text = os.pread(self._fd, 32, 0).decode(errors="replace").strip()
        seq = int(text) + 1 if text.isdigit() else 1
        os.pwrite(self._fd, f"{seq:<20d}\n".encode(), 0)  # fixed width: no truncate, never shorter
        os.fsync(self._fd)
        return seq

    def release(self) -> None:
        os.close(self._fd)


def taken(directory: Path, name: str) -> bool:
    """Whether a segment of this name exists in any form: open, compressed, or being compressed."""
    return any(os.path.lexists(directory / (name + suffix)) for suffix in ("", ".gz", ".gz.tmp"))


def try_lock(data_dir: Path, instance: str) -> int | None:
    """flock another instance's lock file; an fd when its owner is gone, None when it is alive."""
    path = data_dir / LOCK_DIR / f"{instance}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def compress(path: Path) -> Path | None:
    """Gzip a closed segment: write .gz.tmp, fsync, link it to .gz (never over one), then remove the original."""
    if path.stat().st_size == 0:
        path.unlink()
        fsync_dir(path.parent)
        return None
    gz = path.with_name(path.name + ".gz")
    tmp = path.with_name(path.name + ".gz.tmp")
    try:
        with open(path, "rb") as src, open(tmp, "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0) as out:
                shutil.copyfileobj(src, out, 1 << 20)
            raw.flush()
            os.fsync(raw.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)  # (a full disk): the segment stays as it is, compressed later
        raise
    os.link(tmp, gz)  # unlike rename, fails (FileExistsError) rather than replace a segment
    os.unlink(tmp)
    fsync_dir(path.parent)
    path.unlink()
    fsync_dir(path.parent)
    return gz


def trim_torn_tail(path: Path) -> bytes:
    """Cut a partial trailing line (a write cut short by a crash) and return it."""
    with open(path, "r+b") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return b""
        step, end = 64 * 1024, size
        while end > 0:
            start = max(0, end - step)
            fh.seek(start)
            chunk = fh.read(end - start)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                keep = start + cut + 1
                break
            end = start
        else:
            keep = 0
        if keep == size:
            return b""
        fh.seek(keep)
        tail = fh.read()
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
        return tail


def orphan_segments(data_dir: Path, roots: tuple[Path, ...], own: str) -> Iterator[tuple[Path, str]]:
    """Uncompressed segments (and stray .gz.tmp files) whose instance is not running."""
    held: dict[str, int | None] = {own: None}
    try:
        for root in roots:
            for path in sorted(root.glob("**/part-*.ndjson*")):
                match = parse_name(path.name)
                if match is None or (match["gz"] and not match["tmp"]):
                    continue
                instance = match["instance"]
                if instance not in held:
                    held[instance] = try_lock(data_dir, instance)
                    if held[instance] is None:
                        held[instance] = -1  # alive: leave its files alone
                if held[instance] == -1:
                    continue
                yield path, instance
    finally:
        for fd in held.values():
            if fd is not None and fd >= 0:
                os.close(fd)


def is_disk_full(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)
