"""The readiness probe of a file store that failed: can its directory take writes again."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from collector.log.layout import EVENTS
from collector.log.segments import make_dirs


def probe(data_dir: Path, instance: str, needed: int) -> None:
    """Write and fsync a probe file under ``events/``, and ask for ``needed`` bytes free
    (those of the writes that failed) plus a margin; raises ``OSError`` when not."""
    directory = data_dir / EVENTS
    make_dirs(directory)
    path = directory / f".probe-{instance}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, b"x" * 4096)
        os.fsync(fd)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    fs = os.statvfs(directory)
    if fs.f_bavail * fs.f_frsize < needed + 64 * 1024:
        raise OSError(errno.ENOSPC, "not enough free space for the writes that failed")
