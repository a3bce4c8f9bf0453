"""The one safe rewrite of a closed segment, for erasure and compaction.

``rewrite(path, change)`` passes every line of a closed (``.gz``) segment through ``change``
(which returns the line, a replacement, or None to remove it) and puts the result in the
segment's place. The steps, and what a SIGKILL after each leaves (``recover`` runs at the
next start, and before every rewrite)::

    open      <name>.rewrite.tmp created (O_EXCL)        old file whole; recover removes the tmp
    written   new lines written to it                    same
    synced    the tmp fsynced                            same
    ready     tmp linked as <name>.rewrite.ready (never  old file whole; recover finishes the
              over one), unlinked, directory fsynced     rewrite (the new file is complete)
    renamed   .ready renamed over the segment            new file whole
    done      directory fsynced                          new file whole, durable

The final rename replaces only the file that was read: when the segment changed identity
meanwhile (another rewrite, a restore) nothing is replaced and ``Conflict`` is raised. One
rewrite at a time per data directory: it holds ``.locks/rewrite.lock``, which ``recover``
also takes, so recovery never races a live rewrite.

A rewrite moves no line: a removed line becomes a blank line of the same length (spaces, then
its newline), and a replacement is padded with spaces to the length of the line it replaces (a
longer one is refused with ``ValueError``). So every byte offset stays true across a rewrite:
a cursor saved anywhere in the segment (the profile builder's, the console's, the archive's
index), a ``.gz`` a reader keeps open and the Profile API's index of positions all go on at the
first line they have not read, and there is nothing to map, journal or recover. The reader skips
blank lines without a word (``Reader``); gzip stores a run of spaces in a few bytes. What stays
of an erased line is its length.
"""

from __future__ import annotations

import fcntl
import gzip
import logging
import os
import re
from pathlib import Path
from typing import Callable

from collector.log.layout import GZ, LOCK_DIR, LOGS
from collector.log.segments import fsync_dir, make_dirs

log = logging.getLogger("intilery.log.rewrite")

TMP_SUFFIX = ".rewrite.tmp"
READY_SUFFIX = ".rewrite.ready"
CHUNK = 4 << 20  # bytes decompressed at a time by ``holds``
STEPS = ("open", "written", "synced", "ready", "renamed", "done")


class Conflict(Exception):
    """The segment is not the file that was read (replaced meanwhile): nothing was replaced."""


def data_dir_of(path: Path) -> Path:
    """The data directory of a segment: the parent of its ``events/`` or ``rejected/``."""
    for parent in path.parents:
        if parent.name in LOGS:
            return parent.parent
    raise ValueError(f"{path} is not under an events/ or rejected/ directory")


def rewrite(
    path: Path, change: Callable[[bytes], bytes | None], *, pause: Callable[[str], None] = lambda step: None
) -> int:
    """Rewrite a closed segment line by line, every line where it was; returns how many lines
    changed or went (blanked).

    ``pause(step)`` is called after each step (tests stop the process there).
    """
    path = Path(path)
    if not path.name.endswith(GZ):
        raise ValueError(f"only a closed (.gz) segment is rewritten, not {path.name}")
    with lock(data_dir_of(path)):
        _recover_dir(path.parent)
        before = os.stat(path)
        tmp = path.with_name(path.name + TMP_SUFFIX)
        ready = path.with_name(f"{path.name}.{_identity(before)}{READY_SUFFIX}")  # what it replaces
        changed = 0
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with os.fdopen(fd, "wb") as raw:
                pause("open")
                with gzip.open(path, "rb") as src, gzip.GzipFile(
                    filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0  # the level of segments.compress
                ) as out:
                    for line in src:
                        new = _same_length(line, change)
                        if new is not line:
                            changed += 1
                        out.write(new)
                pause("written")
                raw.flush()
                os.fsync(raw.fileno())
            pause("synced")
            if not changed:
                tmp.unlink()
                return 0
            os.link(tmp, ready)  # unlike rename, fails rather than replace a .ready that appeared
            os.unlink(tmp)
            fsync_dir(path.parent)
            pause("ready")
            if _identity(os.stat(path)) != _identity(before):
                ready.unlink()
                raise Conflict(f"{path} changed while it was rewritten; left as it is")
            os.rename(ready, path)
            pause("renamed")
            fsync_dir(path.parent)
            pause("done")
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return changed


def _same_length(line: bytes, change: Callable[[bytes], bytes | None]) -> bytes:
    """``line`` (with its newline) as ``change`` makes it, in the same number of bytes: the very
    object when unchanged; spaces for a line removed; a replacement padded with spaces."""
    stored = line[:-1] if line.endswith(b"\n") else line
    if not stored or stored.isspace():
        return line  # blank: an erased line, or an empty one; nothing to change
    new = change(stored)
    if new == stored:
        return line
    if new is None:
        new = b""
    if len(new) > len(stored) or b"\n" in new:
        raise ValueError("a replacement longer than its line (or holding a newline) would move the lines after it")
    return new + b" " * (len(stored) - len(new)) + b"\n"


def holds(path: Path, search: Callable[[bytes], bool], overlap: int) -> bool:
    """The cheap pre-filter of a rewrite: whether ``search`` finds anything in a closed segment's
    bytes (decompressed in chunks that overlap by ``overlap``, the longest thing searched for).
    No line is split or parsed."""
    tail = b""
    with gzip.open(path, "rb") as src:
        while True:
            chunk = src.read(CHUNK)
            if not chunk:
                return False
            if search(tail + chunk):
                return True
            tail = chunk[-overlap:] if overlap else b""


def recover(data_dir: Path) -> int:
    """Finish or roll back rewrites a killed process left; returns how many it found.

    A ``.rewrite.tmp`` may be incomplete: removed (the old segment is whole). A
    ``.rewrite.ready`` is complete and fsynced: renamed over its segment, when the segment is
    still the file that was read (its name says which); otherwise (restored, or removed, while
    the process was down) removed. A rewrite running in another process (a CLI erasure) is
    waited for: it holds the lock for one segment at a time.
    """
    found = 0
    with lock(Path(data_dir)):
        for log_name in LOGS:
            root = Path(data_dir) / log_name
            directories = {p.parent for suffix in (TMP_SUFFIX, READY_SUFFIX) for p in root.glob(f"**/*{suffix}")}
            for directory in sorted(directories):
                found += _recover_dir(directory)
    return found


def _recover_dir(directory: Path) -> int:
    found = 0
    for leftover in sorted(directory.glob(f"*{TMP_SUFFIX}")):
        leftover.unlink()
        found += 1
    for ready in sorted(directory.glob(f"*{READY_SUFFIX}")):
        stem = ready.name[: -len(READY_SUFFIX)]
        name, _, identity = stem.rpartition(".")
        if not _IDENTITY.fullmatch(identity):
            name, identity = stem, None  # left by an earlier version, which did not say
        segment = ready.with_name(name)
        try:
            current = _identity(os.stat(segment))
        except FileNotFoundError:
            current = None
        if identity is None or current == identity:
            os.rename(ready, segment)
        else:
            log.warning("a rewrite left by a crash was dropped: its segment was replaced or removed since",
                        extra={"segment": str(segment)})  # fmt: skip
            ready.unlink()
        found += 1
    if found:
        fsync_dir(directory)
    return found


def _identity(st: os.stat_result) -> str:
    """What tells one file from another at one path: device, inode, size, mtime."""
    return f"{st.st_dev}-{st.st_ino}-{st.st_size}-{st.st_mtime_ns}"


_IDENTITY = re.compile(r"\d+-\d+-\d+-\d+")


class lock:
    """flock on ``<data_dir>/.locks/rewrite.lock``: one rewrite, recovery or removal of a closed
    segment at a time per data directory (``FileStore`` holds it to delete old dead letters, so
    none comes back through a rewrite's rename). ``wait=False`` gives up when it is held."""

    def __init__(self, data_dir: Path, wait: bool = True) -> None:
        self.data_dir, self.wait = data_dir, wait

    def __enter__(self) -> bool:
        lock_dir = self.data_dir / LOCK_DIR
        make_dirs(lock_dir)
        self.fd = os.open(lock_dir / "rewrite.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
        except BlockingIOError:
            return False
        return True

    def __exit__(self, *exc) -> None:
        os.close(self.fd)
