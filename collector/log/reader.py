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
- a poll of an unchanged log opens no file (an open segment is stat'ed, and opened only
  when it grew): only the directories of partitions that can
  still change are listed (the newest, and those with a segment not read to its end), and
  every ``RESCAN_EVERY`` polls all of them, for a writer that fills an older partition
  (the archive replays a redelivery into the partition it came from).

``stats`` counts the work done (directories listed, files stat'ed and opened, segments
decompressed, bytes read), so "no work while idle" is something a test can check.
"""

from __future__ import annotations

import gzip
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Iterator, NamedTuple

import orjson

from collector.log.layout import EVENTS, GZ, PARTITION_GLOB, parse_name, partitions, plain_name

log = logging.getLogger("intilery.log.reader")

DONE = -1  # a cursor's mark for a closed segment read to its end
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
        self.offsets: dict[str, int] = dict(cursor or {})  # partition/name -> bytes read, or DONE
        self.stats: Counter[str] = Counter()
        self._known: list[str] | None = None
        self._polls = 0
        self._held: _Held | None = None  # at most one part-read .gz kept open

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
    def cursor(self) -> dict[str, int]:
        """Where the next read starts; give it back to ``Reader(cursor=...)`` to resume."""
        return dict(self.offsets)

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
        for key, path in self._segments(self._partitions() if only is None else only):
            if self.offsets.get(key) != DONE:
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
            self.stats["listed"] += 1
            self._known = partitions(self.root, self.log_name, self.since)
            found = self._known
        else:
            found = self._live() + self._newer()
        return sorted(set(found), reverse=self.newest_first)

    def _live(self) -> list[str]:
        """Known partitions that can still change: the newest, and those not read to the end."""
        pending = {key.rpartition("/")[0] for key, offset in self.offsets.items() if offset != DONE}
        return [p for p in self._known if p in pending] + self._known[-1:]

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

    def _segments(self, partitions: list[str]) -> Iterator[tuple[str, Path]]:
        """``(partition/name-without-.gz, path)`` for every segment, the plain file when both exist."""
        for partition in partitions:
            directory = self.root / partition
            self.stats["listed"] += 1
            names: dict[str, str] = {}
            for name in _listdir(directory):
                match = parse_name(name)
                if match is None or match["tmp"]:
                    continue
                plain = plain_name(name)
                if match["gz"] and plain in names:
                    continue  # being compressed: the original is read until it is gone
                names[plain] = name
            for plain in sorted(names, reverse=self.newest_first):
                yield f"{partition}/{plain}", directory / names[plain]

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


def read_events(
    data_dir: Path, root: str = EVENTS, newest_first: bool = False, since: str | None = None
) -> Iterator[dict]:
    """Every stored event under ``data_dir/root`` from partitions >= ``since`` (a one-off read)."""
    return Reader(Path(data_dir) / root, since=since, newest_first=newest_first, log_name=root).events()
