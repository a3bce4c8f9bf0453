"""The open segments under one root (``events/`` or ``rejected/``): written, undone, synced, rotated.

Used by the file store's writer thread only (``files.FileStore``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from collector.log import segments
from collector.log.layout import segment_name
from collector.log.segments import InstanceLock, make_dirs

log = logging.getLogger("intilery.store")


@dataclass
class Segment:
    fd: int
    path: Path
    size: int = 0
    dirty: bool = False


class SegmentLog:
    """The open segments under one root (events/ or rejected/); used by the writer thread only."""

    def __init__(self, root: Path, lock: InstanceLock, max_bytes: int, on_close) -> None:
        self.root, self.lock, self.max_bytes, self.on_close = root, lock, max_bytes, on_close
        self.open: dict[str, Segment] = {}

    def _segment(self, partition: str) -> Segment:
        seg = self.open.get(partition)
        if seg is not None:
            return seg
        directory = self.root / partition
        make_dirs(directory)
        while True:
            name = segment_name(self.lock.name, self.lock.next_seq())
            if segments.taken(directory, name):
                continue
            path = directory / name
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
                break
            except FileExistsError:
                continue
        segments.fsync_dir(directory)
        seg = self.open[partition] = Segment(fd, path)
        return seg

    def write(self, partition: str, data: bytes) -> tuple[Segment, int]:
        """Append ``data``; returns the segment and its size before, for ``undo``."""
        seg = self._segment(partition)
        view, start = memoryview(data), seg.size
        try:
            while view:
                written = os.write(seg.fd, view)
                view = view[written:]
        except OSError:
            self.undo(seg, start)
            raise
        seg.size += len(data)
        seg.dirty = True
        return seg, start

    def undo(self, seg: Segment, size: int) -> None:
        """Cut a segment back to ``size`` so a failed commit leaves nothing behind.

        A reader may have read the lines cut (written, never acknowledged): its cursor is past
        ``size``. So a segment that lost bytes is closed, never written again: the next line goes
        to a new segment, and no reader's cursor lands in the middle of a line written after
        the cut. The lines cut are the client's to send again (they were answered 503)."""
        if seg.fd < 0:
            return
        try:
            cut = os.fstat(seg.fd).st_size > size
            os.ftruncate(seg.fd, size)
            seg.size = size
        except OSError:
            log.error("cannot truncate %s after a failed write; abandoning it", seg.path)
            self._drop(seg)
            return
        if cut:
            self._retire(seg)

    def _retire(self, seg: Segment) -> None:
        """Close a segment whose last lines were cut, as ``close`` does, its fsync's error logged:
        the commit that failed is already answered."""
        for partition, open_seg in list(self.open.items()):
            if open_seg is seg:
                try:
                    self.close(partition)
                except OSError as exc:
                    log.error("cannot fsync %s after a failed write: %s", seg.path, exc)
                    self.on_close(seg.path)  # closed all the same: compressed, never written again
                return

    def _drop(self, seg: Segment) -> None:
        """Forget a segment that cannot be used (removed from under us, or not truncatable)."""
        self.open = {p: s for p, s in self.open.items() if s is not seg}
        fd, seg.fd = seg.fd, -1
        os.close(fd)

    def sync(self) -> None:
        for seg in list(self.open.values()):
            if seg.dirty:
                os.fsync(seg.fd)
                if os.fstat(seg.fd).st_nlink == 0:
                    self._drop(seg)
                    raise FileNotFoundError(f"segment {seg.path} was removed from under the store")
                seg.dirty = False

    def rotate(self, keep: set[str] | None = None) -> None:
        """Close full segments, and those of partitions that time has left behind.

        ``keep``: the partitions still taking lines (this hour, and the last one while late
        requests may still arrive); without it, the two newest stay open. Called between
        commits only, so a commit's undo never meets a segment closed under it.
        """
        newest = set(sorted(self.open)[-2:])
        for partition, seg in list(self.open.items()):
            if seg.size >= self.max_bytes or partition not in (newest if keep is None else keep):
                self.close(partition)

    def close(self, partition: str) -> None:
        seg = self.open.pop(partition)
        fd, seg.fd = seg.fd, -1  # forgotten: an undo can never act on a number reused since
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self.on_close(seg.path)

    def close_all(self) -> None:
        for partition in list(self.open):
            self.close(partition)
