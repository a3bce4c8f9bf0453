"""The one reader of the file log: whole lines, in order, from a cursor that can be saved.

Every consumer of the log reads through ``Reader`` (``intilery tail``, the duplicate filter's
rebuild, the archive's index of its output, the tests)::

    reader = Reader(data_dir / "events", cursor=saved)      # or Reader.at_end(...) to follow
    for record in reader.read():                            # what is there now, then returns
        handle(record.event)                                # record.line: the stored bytes
    saved = reader.cursor                                   # a dict, JSON-serialisable

What it promises:

- whole lines only: a line still being written (no newline yet) is read on a later call;
- open and closed segments alike, across rotation and compression: a segment compressed
  while being read is finished from its ``.gz`` at the same offset;
- a closed segment is read once: once its ``.gz`` is read to the end the cursor marks it
  done and it is never opened (or decompressed) again;
- a ``.gz`` left part-read (a consumer that stops after a batch) is decompressed once, not
  once a batch: the reader keeps it open, with what it had read ahead, and the next read that
  continues from where the last stopped (the same segment, the same offset, the same file)
  goes on from there; any other read closes it and opens the file again (a gzip ``seek`` is
  a decompression from the start). It is closed when the segment is finished, and by
  ``close()`` (or when the reader is collected);
- a rewrite (an erasure) moves no line (``rewrite.py``): a cursor saved anywhere, a ``.gz``
  kept open and an index of positions stay true across it; a line it erased is blank and
  skipped without a word;
- a line that is not a JSON object is quarantined: logged, counted in ``quarantined``,
  skipped, never raised (``Quarantine``, shared with ``stream_reader.StreamReader``, the
  same interface over the NATS stream);
- the cursor stays small (``cursor``): segments read to their end fold into one number per
  writing instance, ``{"done": {instance: seq}}``, so its size does not grow with the log's
  age; a cursor of the earlier form (an entry per segment) is read as it was;
- a poll of an unchanged log opens no file (an open segment is stat'ed, and opened only
  when it grew): only the directories of partitions that can
  still change are listed (the newest, and those with a segment not read to its end), and
  every ``RESCAN_EVERY`` polls a walk stats every partition's directory and lists those that
  changed, for a writer that fills an older partition (the archive replays a redelivery into
  the partition it came from);
- a failed commit's cut never lands a cursor in the middle of a line: the writer closes a
  segment it cut (``segment_log.SegmentLog.undo``), so a reader past the cut goes on in the next.

``stats`` counts the work done (directories listed, files stat'ed and opened, segments
decompressed, bytes read), so "no work while idle" is something a test can check.
"""

from __future__ import annotations

import gzip
import logging
import os
import time
from collections import Counter
from pathlib import Path
from typing import Iterator, NamedTuple

import orjson

from collector.log.layout import EVENTS, GZ, PARTITION_GLOB, parse_name, partitions, plain_name

log = logging.getLogger("intilery.log.reader")

DONE = -1  # a cursor's mark for a closed segment read to its end
DONE_KEY = "done"  # the cursor's entry for the segments folded away: {instance: highest seq read}
CHUNK = 4 << 20  # bytes read from a segment at a time
RESCAN_EVERY = 30  # polls between listings of every partition


class Record(NamedTuple):
    event: dict
    line: bytes  # as stored, without its newline
    segment: str  # partition/name of the segment (without .gz)


class Quarantine:
    """What every reader of the log does with a line: a record, or counted, logged and skipped."""

    quarantined = 0

    def record(self, line: bytes, where: str) -> Record | None:
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            event = None
        if isinstance(event, dict):
            return Record(event, line, where)
        self.quarantined += 1
        log.warning("skipped a line that is not a JSON object", extra={"segment": where, "bytes": len(line)})
        return None


class _Held(NamedTuple):
    """A part-read ``.gz`` kept open between reads: ``fh`` is positioned after ``ahead``, the
    bytes of the segment from ``offset`` (the cursor when the last read stopped) already read."""

    key: str
    fh: gzip.GzipFile
    identity: tuple[int, int]  # (st_dev, st_ino) of the file it reads
    offset: int
    ahead: bytes


class Reader(Quarantine):
    """Reads the segments under ``root`` (``<data_dir>/events`` or ``rejected``)."""

    def __init__(
        self,
        root: Path,
        cursor: dict[str, int] | None = None,
        *,
        since: str | None = None,
        newest_first: bool = False,
        log_name: str | None = None,
    ) -> None:
        self.root = Path(root)
        self.log_name = log_name or (self.root.name if self.root.name in PARTITION_GLOB else EVENTS)
        self.since = since
        self.newest_first = newest_first
        self.stats: Counter[str] = Counter()
        self._held: _Held | None = None  # at most one part-read .gz kept open
        self.cursor = cursor or {}

    def close(self) -> None:
        """Close the part-read ``.gz`` it keeps open, if any (reading again reopens it)."""
        held, self._held = self._held, None
        if held is not None:
            held.fh.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    @classmethod
    def at_end(cls, root: Path, **options) -> Reader:
        """A reader that starts after what is stored now (what ``intilery tail`` follows from)."""
        reader = cls(root, **options)
        for key, path in reader._segments(reader._partitions()):
            if path.name.endswith(GZ):
                reader.offsets[key] = DONE
            else:
                reader.offsets[key] = _last_line_end(path)
        return reader

    @property
    def cursor(self) -> dict:
        """Where the next read starts; give it back to ``Reader(cursor=...)`` to resume.

        ``{"done": {instance: seq}, "partition/name": offset, ...}``: every segment of an
        instance numbered up to its ``done`` is read to its end (``_fold``), and the other
        entries are the segments read part-way (or to the end, not folded yet). A cursor of
        the earlier form (every segment's entry, no ``done``) is read as it was."""
        self._fold()
        cursor: dict = dict(self.offsets)
        if self.done:
            cursor[DONE_KEY] = dict(self.done)
        return cursor

    @cursor.setter
    def cursor(self, cursor: dict) -> None:
        """Start the next read from ``cursor`` (a saved one, or one taken back after a failure)."""
        cursor = dict(cursor)
        self.done: dict[str, int] = {str(k): int(v) for k, v in (cursor.pop(DONE_KEY, None) or {}).items()}
        self.offsets: dict[str, int] = cursor  # partition/name -> bytes read, or DONE
        # what the listings taught, in memory only; forgotten with the cursor it was learnt with
        self._known: list[str] | None = None  # every partition, as of the last walk
        self._mtimes: dict[str, int | None] = {}  # partition -> its directory's mtime when listed
        self._present: dict[str, dict[int, str]] = {}  # instance -> {seq: key} seen, above done
        self._complete: dict[str, int] = {}  # instance -> highest seq of the last complete walk
        self._listing: dict[str, dict[str, str]] = {}  # partitions the walk listed, for this poll
        self._polls = 0

    def read(self) -> Iterator[Record]:
        """Every whole line not read yet, as records; returns when it reaches the end."""
        for line, key in self.lines():
            record = self.record(line, key)
            if record is not None:
                yield record

    def events(self) -> Iterator[dict]:
        return (record.event for record in self.read())

    def lines(self, only: list[str] | None = None) -> Iterator[tuple[bytes, str]]:
        """Every whole line not read yet (in the partitions ``only``, when given), as stored
        (without the newline), with its segment."""
        self._polls += 1
        self._listing = {}
        for key, path in self._segments(self._partitions() if only is None else only):
            if not self._done(key):
                yield from self._read_segment(key, path)

    def lines_at(self, segment: str, positions: list[int]) -> dict[int, Record]:
        """The whole lines that start at ``positions`` of ``segment`` (``partition/name``, open or
        closed), by position: an index into the log (the profiles' events) reads it through here.
        A closed segment is decompressed once for all the positions asked."""
        found: dict[int, Record] = {}
        path = self.root / segment
        try:
            fh = open(path, "rb")
        except FileNotFoundError:
            try:
                fh = gzip.open(path.with_name(path.name + GZ), "rb")
                self.stats["decompressed"] += 1
            except FileNotFoundError:
                return found
        self.stats["opened"] += 1
        try:
            with fh:
                for position in sorted(set(positions)):
                    fh.seek(position)
                    line = fh.readline()
                    if line.endswith(b"\n") and not line.isspace():  # a blank line: erased
                        record = self.record(line[:-1], segment)
                        if record is not None:
                            found[position] = record
        except (EOFError, gzip.BadGzipFile, OSError) as exc:
            log.warning("cannot read a segment: %s", exc, extra={"segment": segment})
        return found

    # --- where to look ------------------------------------------------------------------------
    def _partitions(self) -> list[str]:
        if self._known is None or self._polls % RESCAN_EVERY == 0:
            found = self._walk()
        else:
            found = self._live() + self._newer()
        return sorted(set(found), reverse=self.newest_first)

    def _walk(self) -> list[str]:
        """Every partition's directory stat'ed, and listed only when it changed since it was last
        listed (a new segment, a compression, a rewrite): the periodic look for a segment a writer
        put in an older partition. Returns the partitions that can hold something unread. When it
        is done, every segment that existed when it began is known (``_complete``)."""
        known = self._highest()  # every segment numbered up to these existed before the walk began
        walk = {}
        self.stats["listed"] += 1
        for day in sorted(_listdir(self.root)):
            if not day.startswith("dt=") or (self.since and day < self.since.split("/", 1)[0]):
                continue
            if self.log_name == EVENTS:
                self.stats["listed"] += 1
                walk.update((f"{day}/{hr}", None) for hr in sorted(_listdir(self.root / day)) if hr.startswith("hr="))
            else:
                walk[day] = None
        changed, now = [], time.time_ns()
        for partition in walk:
            if self.since and partition < self.since:
                continue
            try:
                self.stats["dirs"] += 1
                mtime = os.stat(self.root / partition).st_mtime_ns
            except (FileNotFoundError, NotADirectoryError):
                continue
            if self._mtimes.get(partition) != mtime:
                self._listing[partition] = self._names(partition)  # what it holds, for this poll too
                # a directory changed less than a second ago may change again within the same tick
                # of its clock, its mtime unchanged: listed again next time
                self._mtimes[partition] = mtime if now - mtime > 1_000_000_000 else None
                changed.append(partition)
        listed = set(changed)
        for instance, seqs in self._present.items():
            for seq in [seq for seq, key in seqs.items() if key.rpartition("/")[0] in listed
                        and key.rpartition("/")[2] not in self._listing[key.rpartition("/")[0]]]:  # fmt: skip
                del seqs[seq]  # gone (retention): nothing to wait for
        self._known = sorted(p for p in walk if not self.since or p >= self.since)
        self._complete = known  # so every one of them was seen, by this walk or a listing before
        self._fold()
        return changed + self._live()

    def _live(self) -> list[str]:
        """Partitions that can still change: the newest, and those with a segment not read to its end."""
        pending = {key.rpartition("/")[0] for key, offset in self.offsets.items() if offset != DONE}
        pending.update(key.rpartition("/")[0] for seqs in self._present.values() for key in seqs.values()
                       if self.offsets.get(key) != DONE)  # fmt: skip
        return sorted(pending) + self._known[-1:]

    def _newer(self) -> list[str]:
        """Partitions created since the last listing (later than the newest known)."""
        newest = self._known[-1] if self._known else (self.since or "")
        day = newest.split("/", 1)[0]
        new: list[str] = []
        self.stats["listed"] += 1
        for entry in _listdir(self.root):
            if entry < day or not entry.startswith("dt="):
                continue
            if self.log_name == EVENTS:
                self.stats["listed"] += 1
                new += [f"{entry}/{hr}" for hr in _listdir(self.root / entry) if hr.startswith("hr=")]
            else:
                new.append(entry)
        new = [p for p in new if p > newest]
        self._known = sorted(set(self._known) | set(new))
        return new

    # --- what is done -------------------------------------------------------------------------
    def _done(self, key: str) -> bool:
        """Whether the segment ``key`` is read to its end (its entry, or its instance's ``done``)."""
        offset = self.offsets.get(key)
        if offset is not None:
            return offset == DONE
        seen = _instance_seq(key)
        return seen is not None and seen[1] <= self.done.get(seen[0], 0)

    def _highest(self) -> dict[str, int]:
        """The highest segment number seen of each instance (listed, read, or in ``done``)."""
        highest = dict(self.done)
        for instance, seqs in self._present.items():
            highest[instance] = max([highest.get(instance, 0), *seqs])
        for key in self.offsets:
            seen = _instance_seq(key)
            if seen is not None and seen[1] > highest.get(seen[0], 0):
                highest[seen[0]] = seen[1]
        return highest

    def _fold(self) -> None:
        """Move segments read to their end out of ``offsets`` into their instance's ``done``.

        An instance numbers its segments in the order it creates them (``InstanceLock.next_seq``,
        one counter for both logs), so ``done[instance] = n`` can say "every segment numbered up
        to n is read" once each number up to n is either read to its end or known not to be in
        this log: not seen by a walk of every partition (``_walk``) that began after a higher
        number of the instance was seen (the other log's, an empty segment removed, one before
        ``since``). An instance creates its segments one after the other, each file as soon as
        its number is taken, so every lower number that is in the log was there too."""
        ends: dict[str, dict[int, str]] = {}
        reading: dict[str, set[int]] = {}
        for key, offset in self.offsets.items():
            seen = _instance_seq(key)
            if seen is not None:
                if offset == DONE:
                    ends.setdefault(seen[0], {})[seen[1]] = key
                else:
                    reading.setdefault(seen[0], set()).add(seen[1])
        for instance, complete in self._complete.items():
            n = start = self.done.get(instance, 0)
            read, present = ends.get(instance, {}), self._present.get(instance, {})
            busy = reading.get(instance, set())
            while n < complete and n + 1 not in busy and (n + 1 in read or n + 1 not in present):
                n += 1
            if n == start:
                continue
            self.done[instance] = n
            for seq in [seq for seq in present if seq <= n]:
                del present[seq]
            for seq, key in read.items():
                if seq <= n:
                    del self.offsets[key]

    def _segments(self, partitions: list[str]) -> Iterator[tuple[str, Path]]:
        """``(partition/name-without-.gz, path)`` for every segment, the plain file when both exist."""
        for partition in partitions:
            names = self._listing.pop(partition, None)
            if names is None:
                names = self._names(partition)
            for plain in sorted(names, reverse=self.newest_first):
                yield f"{partition}/{plain}", self.root / partition / names[plain]

    def _names(self, partition: str) -> dict[str, str]:
        """The segments of a partition: name without .gz -> the file to read; each one not done
        noted in ``_present``."""
        self.stats["listed"] += 1
        names: dict[str, str] = {}
        for name in _listdir(self.root / partition):
            match = parse_name(name)
            if match is None or match["tmp"]:
                continue
            plain = plain_name(name)
            if match["gz"] and plain in names:
                continue  # being compressed: the original is read until it is gone
            names[plain] = name
            instance, seq = match["instance"], int(match["seq"])
            if seq > self.done.get(instance, 0):
                self._present.setdefault(instance, {})[seq] = f"{partition}/{plain}"
        return names

    # --- reading one segment ------------------------------------------------------------------
    def _read_segment(self, key: str, path: Path) -> Iterator[tuple[bytes, str]]:
        offset = self.offsets.get(key, 0)
        if not path.name.endswith(GZ):
            try:
                self.stats["stat"] += 1
                if os.stat(path).st_size <= offset:
                    return  # nothing new: not even opened
                fh = open(path, "rb")
            except FileNotFoundError:  # compressed meanwhile: finished from the .gz
                path = path.with_name(path.name + GZ)
            else:
                self.stats["opened"] += 1
                with fh:
                    fh.seek(offset)
                    yield from self._whole_lines(key, fh, offset, closed=False)
                return
        fh, ahead = self._resume(key, path, offset)
        try:
            if fh is None:
                fh = gzip.open(path, "rb")
                self.stats["opened"] += 1
                self.stats["decompressed"] += 1
                fh.seek(offset)
            yield from self._whole_lines(key, fh, offset, closed=True, ahead=ahead)
        except FileNotFoundError:
            return  # removed (a rewrite, or retention): nothing to read
        except (EOFError, gzip.BadGzipFile, OSError) as exc:
            log.warning("cannot read a closed segment: %s", exc, extra={"segment": key})
        finally:
            if fh is not None and (self._held is None or self._held.fh is not fh):
                fh.close()  # finished, failed, or not kept

    def _resume(self, key: str, path: Path, offset: int) -> tuple[gzip.GzipFile | None, bytes]:
        """The kept ``.gz`` and what it read ahead, when this read continues where the last
        stopped in the same file; otherwise ``(None, b"")``, and the kept one is closed."""
        held, self._held = self._held, None
        if held is None:
            return None, b""
        if held.key == key and held.offset == offset:
            try:
                st = os.stat(path)
                if (st.st_dev, st.st_ino) == held.identity:
                    return held.fh, held.ahead
            except OSError:
                pass  # gone (a rewrite, retention): opening it again says so
        held.fh.close()
        return None, b""

    def _hold(self, key: str, fh, offset: int, ahead: bytes) -> None:
        try:
            st = os.fstat(fh.fileno())
        except (OSError, ValueError):
            return  # not a file to keep: the caller closes it
        self.close()
        self._held = _Held(key, fh, (st.st_dev, st.st_ino), offset, ahead)

    def _whole_lines(
        self, key: str, fh, offset: int, *, closed: bool, ahead: bytes = b""
    ) -> Iterator[tuple[bytes, str]]:
        """The whole lines of ``fh`` (positioned after ``ahead``, the bytes at ``offset``).

        A closed segment left part-read (the consumer stopped) is kept open for the next read
        (``_hold``), with the bytes read ahead of the cursor."""
        data, start, rest = b"", offset, b""
        try:
            while True:
                if ahead:  # first what an earlier read left: more only once it is used up
                    chunk, ahead = ahead, b""
                else:
                    chunk = fh.read(CHUNK)
                    self.stats["bytes"] += len(chunk)
                data, start = rest + chunk, offset  # the segment's bytes from offset
                end = data.rfind(b"\n") + 1
                rest = data[end:]
                for line in data[:end].split(b"\n")[:-1]:
                    offset += len(line) + 1
                    self.offsets[key] = offset
                    if line and not (line[0] == 32 and line.isspace()):  # 32: a blank line, erased
                        yield line, key
                if not chunk:
                    break
        except GeneratorExit:
            if closed:
                self._hold(key, fh, offset, data[offset - start:])
            raise
        if closed:
            if rest:  # a closed segment never grows: its last partial line is all there is
                self.quarantined += 1
                log.warning("skipped a partial last line of a closed segment", extra={"segment": key})
            self.offsets[key] = DONE
        else:
            self.offsets[key] = offset


def _instance_seq(key: str) -> tuple[str, int] | None:
    """The instance and number of the segment ``partition/name``, or None for another name."""
    match = parse_name(key.rpartition("/")[2])
    return None if match is None else (match["instance"], int(match["seq"]))


def _listdir(directory: Path) -> list[str]:
    try:
        return os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _last_line_end(path: Path) -> int:
    """The offset just after the last newline of a plain segment (0 when it has none)."""
    try:
        with open(path, "rb") as fh:
            end = fh.seek(0, os.SEEK_END)
            while end > 0:
                start = max(0, end - 65536)
                fh.seek(start)
                cut = fh.read(end - start).rfind(b"\n")
                if cut >= 0:
                    return start + cut + 1
                end = start
    except FileNotFoundError:
        pass
    return 0
