"""The log's one reader: whole lines, across rotation and compression, from a saved cursor."""

from __future__ import annotations

import gzip
import io
import json
import os
import time
from collections import Counter
from pathlib import Path

import orjson

from collector.log import reader as reader_module, rewrite, segments
from collector.log.files import FileStore
from collector.log.segment_log import SegmentLog
from collector.log.layout import hour_partition
from collector.log.reader import DONE, Reader
from helpers import read_events
from collector.log.tail import follow

PARTITION = "dt=2026-11-28/hr=10"
KEY = {"X-Write-Key": "wk_server"}


def line(n: int) -> bytes:
    return orjson.dumps({"type": "track", "event": f"E{n}", "userId": "u", "messageId": f"m{n}", "pad": "x" * 200}) + b"\n"


def names(records) -> list[str]:
    return [record.event["event"] for record in records]


def segment(root: Path, name: str = "part-h_0-000001.ndjson", partition: str = PARTITION) -> Path:
    directory = root / "events" / partition
    directory.mkdir(parents=True, exist_ok=True)
    return directory / name


def closed_segments(root: Path, count: int, per_segment: int = 20) -> list[Path]:
    """``count`` gzipped segments written as the store writes them (write, close, compress)."""
    paths = []
    for s in range(count):
        path = segment(root, f"part-h_0-{s + 1:06d}.ndjson")
        path.write_bytes(b"".join(line(s * per_segment + i) for i in range(per_segment)))
        paths.append(segments.compress(path))
    return paths


class TestWholeLines:
    def test_a_segment_compressed_while_being_read_is_finished_from_its_gz(self, tmp_path):
        """Lines written after a read, then the segment closed and gzipped: each is read once, from the .gz."""
        path = segment(tmp_path)
        path.write_bytes(b"".join(line(n) for n in range(5)))
        reader = Reader(tmp_path / "events")
        assert names(reader.read()) == [f"E{n}" for n in range(5)]
        with open(path, "ab") as fh:
            fh.write(b"".join(line(n) for n in range(5, 10)))
        segments.compress(path)
        assert names(reader.read()) == [f"E{n}" for n in range(5, 10)]
        decompressed = reader.stats["decompressed"]
        assert list(reader.read()) == []
        assert reader.stats["decompressed"] == decompressed, "a closed segment read to its end was decompressed again"
        assert reader.cursor == {f"{PARTITION}/{path.name}": DONE}

    def test_a_torn_last_line_is_read_once_it_is_whole(self, tmp_path):
        """A line still being written is not returned until its newline arrives, then returned whole."""
        path = segment(tmp_path)
        third = line(2)
        path.write_bytes(line(0) + line(1) + third[:40])
        reader = Reader(tmp_path / "events")
        assert names(reader.read()) == ["E0", "E1"]
        with open(path, "ab") as fh:
            fh.write(third[40:])
        assert names(reader.read()) == ["E2"]
        assert reader.quarantined == 0

    def test_a_malformed_line_in_the_middle_is_quarantined_not_raised(self, tmp_path):
        """A line that is not JSON (or not an object) is skipped and counted; the lines around it are read."""
        path = segment(tmp_path)
        path.write_bytes(line(0) + b'{"type": "track", "event": "cut\n' + b"[1, 2]\n" + line(1))
        segments.compress(path)
        reader = Reader(tmp_path / "events")
        assert names(reader.read()) == ["E0", "E1"]
        assert reader.quarantined == 2
        assert [e["event"] for e in read_events(tmp_path)] == ["E0", "E1"]

    async def test_a_malformed_stored_line_does_not_stop_the_collector_starting(self, make_client, config):
        """The duplicate filter is rebuilt from the log at start: a bad line there is skipped, and the app serves."""
        path = segment(config.data_dir, partition=hour_partition(time.time()))
        path.write_bytes(b"not json at all\n")
        segments.compress(path)
        client = await make_client(config)
        answer = await client.post("/v1/track", json={"userId": "u", "event": "After"}, headers=KEY)
        assert answer.status == 200


class TestCursor:
    async def test_a_resumed_cursor_misses_nothing_and_repeats_nothing(self, tmp_path):
        """Read part of a rotating store, save the cursor as JSON, resume in a new reader: every line exactly once."""
        store = FileStore(tmp_path, segment_max_bytes=2_000)
        await store.start()
        for n in range(30):
            await store.append([line(n)], partition=PARTITION)
        first = Reader(tmp_path / "events")
        seen = []
        for record in first.read():
            seen.append(record.event["event"])
            if len(seen) == 17:
                break  # a consumer stopping mid-segment
        saved = json.dumps(first.cursor)
        for n in range(30, 60):
            await store.append([line(n)], partition=PARTITION)
        await store.close()  # every segment closed and gzipped, some while half read
        resumed = Reader(tmp_path / "events", cursor=json.loads(saved))
        seen += names(resumed.read())
        assert seen == [f"E{n}" for n in range(60)]
        assert len(list((tmp_path / "events").glob("**/*.gz"))) > 5


class TestTruncation:
    def test_lines_cut_by_a_failed_commit_do_not_misplace_a_reader_past_them(self, tmp_path):
        """A commit writes lines, a reader reads them, the commit fails (its fsync, say) and is cut
        back (``undo``), then the next commits write: the reader, whose cursor is past the cut, goes
        on at the first line it has not read; no fragment, nothing skipped (D6)."""
        lock = segments.InstanceLock(tmp_path, "h")
        written = SegmentLog(tmp_path / "events", lock, 1 << 20, segments.compress)
        reader = Reader(tmp_path / "events")
        written.write(PARTITION, b"".join(line(n) for n in range(5)))
        assert names(reader.read()) == [f"E{n}" for n in range(5)]
        seg, size = written.write(PARTITION, b"".join(line(n) for n in range(5, 10)))
        assert names(reader.read()) == [f"E{n}" for n in range(5, 10)]  # not acknowledged, but visible
        written.undo(seg, size)  # what _commit does when the fsync fails
        written.write(PARTITION, b"".join(line(n) for n in range(5, 40)))  # the client's retry, and more
        assert names(reader.read()) == [f"E{n}" for n in range(5, 40)]
        for partition in list(written.open):
            written.close(partition)
        assert names(reader.read()) == []
        assert reader.quarantined == 0
        lock.release()


def aged_log(root: Path, days: int, per_hour: int) -> tuple[list[str], int]:
    """Closed segments of two instances over ``days`` days of hourly partitions, numbered as
    ``InstanceLock`` numbers them (one counter per instance, every third number the other log's),
    their directories dated an hour back; then one open segment. Returns the partitions and the
    number of lines."""
    seq, partitions, lines = {"h_0": 0, "h_1": 0}, [], 0
    for day in range(days):
        for hour in range(24):
            partition = f"dt=2026-10-{day + 1:02d}/hr={hour:02d}"
            directory = root / "events" / partition
            directory.mkdir(parents=True)
            for n in range(per_hour):
                instance = f"h_{n % 2}"
                seq[instance] += 2 if seq[instance] % 3 == 1 else 1  # a number the other log took
                data = line(lines)
                (directory / f"part-{instance}-{seq[instance]:06d}.ndjson.gz").write_bytes(gzip.compress(data, 1))
                lines += 1
            partitions.append(partition)
    open_segment = root / "events" / partitions[-1] / f"part-h_0-{seq['h_0'] + 1:06d}.ndjson"
    open_segment.write_bytes(line(lines))
    for directory in [root / "events" / p for p in partitions] + [root / "events" / p.split("/")[0] for p in partitions]:
        os.utime(directory, ns=(time.time_ns() - 3600 * 10**9,) * 2)
    return partitions, lines + 1


class TestCursorSize:
    def test_ten_thousand_closed_segments_leave_a_small_cursor_and_idle_polls_touch_only_live_ones(self, tmp_path):
        """10,080 closed segments read: the saved cursor is under 4 KB, a cursor of the earlier form
        (an entry per segment) still loads, and polls after it open, decompress and stat nothing but
        the open segment, and list no closed partition (the walk every RESCAN_EVERY polls stats each
        partition's directory and lists none that did not change) (D5)."""
        partitions, count = aged_log(tmp_path, days=20, per_hour=21)
        reader = Reader(tmp_path / "events")
        assert sum(1 for _ in reader.read()) == count
        for _ in range(reader_module.RESCAN_EVERY):  # the next walk: every number below is accounted for
            assert list(reader.read()) == []
        saved = json.dumps(reader.cursor)
        assert len(saved) < 4096, f"a cursor of {len(saved)} bytes after {count - 1} closed segments"
        old_form = {f"{p}/{name[:-3]}": DONE for p in partitions for name in os.listdir(tmp_path / "events" / p)
                    if name.endswith(".gz")}  # fmt: skip
        old_form.update((k, v) for k, v in reader.offsets.items() if v != DONE)
        for cursor in (json.loads(saved), old_form):
            resumed = Reader(tmp_path / "events", cursor=cursor)
            assert list(resumed.read()) == [] and resumed.stats["opened"] == 0
            assert len(json.dumps(resumed.cursor)) < 4096
        before = Counter(reader.stats)
        polls = 2 * reader_module.RESCAN_EVERY
        for _ in range(polls):
            assert list(reader.read()) == []
        work = Counter(reader.stats)
        work.subtract(before)
        assert work["opened"] == work["decompressed"] == work["bytes"] == 0
        assert work["stat"] == polls, "a poll stat'ed more than the open segment"
        walks, days = 2, 20
        assert work["listed"] <= polls * 3 + walks * (1 + days), f"{work['listed']} listings in {polls} polls"

    def test_a_segment_written_late_into_an_old_partition_is_read_once(self, tmp_path):
        """The archive writes a redelivered line into the partition it came from: a new segment in an
        old, folded partition is found by the next walk and read once, by the reader that folded it
        and by one resumed from its saved cursor."""
        partitions, count = aged_log(tmp_path, days=2, per_hour=6)
        reader = Reader(tmp_path / "events")
        assert sum(1 for _ in reader.read()) == count
        for _ in range(reader_module.RESCAN_EVERY):
            assert list(reader.read()) == []
        saved = reader.cursor
        assert len(json.dumps(saved)) < 512
        late = tmp_path / "events" / partitions[3] / "part-h_1-099999.ndjson.gz"
        late.write_bytes(gzip.compress(line(999)))
        seen = []
        for _ in range(reader_module.RESCAN_EVERY):
            seen += names(reader.read())
        assert seen == ["E999"]
        assert names(Reader(tmp_path / "events", cursor=saved).read()) == ["E999"]


class TestIdle:
    def test_following_an_unchanged_store_opens_and_decompresses_nothing(self, tmp_path):
        """After the first read, polls of an unchanged store open no file, decompress nothing, read no byte."""
        closed_segments(tmp_path, 5)
        segment(tmp_path, "part-h_1-000001.ndjson").write_bytes(line(1000) + line(1001))
        reader = Reader(tmp_path / "events")
        assert len(list(reader.read())) == 5 * 20 + 2
        before = dict(reader.stats)
        for _ in range(100):
            assert list(reader.read()) == []
        work = {k: reader.stats[k] - before.get(k, 0) for k in ("opened", "decompressed", "bytes")}
        assert work == {"opened": 0, "decompressed": 0, "bytes": 0}
        listed = reader.stats["listed"] - before.get("listed", 0)
        assert listed <= 100 * 4, f"{listed} directory listings for 100 idle polls"

    def test_following_from_the_end_decompresses_no_closed_segment(self, tmp_path):
        """``intilery tail`` starts after what is stored without reading the closed segments at all."""
        closed_segments(tmp_path, 5)
        reader = Reader.at_end(tmp_path / "events")
        assert list(reader.read()) == []
        assert reader.stats["decompressed"] == 0 and reader.stats["bytes"] == 0

    def test_tail_from_start_decompresses_each_closed_segment_once(self, tmp_path, monkeypatch):
        """20 polls of ``intilery tail --from-start`` over 5 gzipped segments open each .gz once (counted at gzip.open)."""
        closed_segments(tmp_path, 5)
        opened: list[str] = []
        real_open = gzip.open

        def counting_open(path, *args, **kwargs):
            opened.append(str(path))
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(gzip, "open", counting_open)
        out, polls = io.StringIO(), iter(range(20))
        follow(tmp_path, as_json=True, from_start=True, interval=0, out=out, keep_going=lambda: next(polls, None) is not None)
        assert len(out.getvalue().splitlines()) == 100
        assert len(opened) == 5, f"{len(opened)} decompressions of 5 closed segments over 20 polls"


def varied_line(n: int) -> bytes:
    """A line that does not compress to nothing (its pad differs from line to line)."""
    pad = orjson.dumps([n * 7919 % 100003 + i for i in range(30)]).decode()
    return orjson.dumps({"type": "track", "event": f"E{n}", "userId": "u", "messageId": f"m{n}", "pad": pad}) + b"\n"


class CountingGzip:
    """``gzip.open`` that counts what the reader opens and the compressed bytes it reads."""

    def __init__(self, monkeypatch) -> None:
        self.opened: list = []
        self.raw_bytes = 0
        real_open = gzip.open
        counter = self

        class Raw(io.FileIO):
            def read(self, size=-1):
                data = super().read(size)
                counter.raw_bytes += len(data)
                return data

            def readinto(self, buffer):
                n = super().readinto(buffer)
                counter.raw_bytes += n or 0
                return n

        class Gz(gzip.GzipFile):  # closes its file, as gzip.open's does
            def __init__(self, path) -> None:
                self.raw = Raw(path, "rb")
                super().__init__(fileobj=self.raw, mode="rb")

            def close(self) -> None:
                try:
                    super().close()
                finally:
                    self.raw.close()

        def counting_open(path, mode="rb", *args, **kwargs):
            if mode != "rb":
                return real_open(path, mode, *args, **kwargs)
            self.opened.append(Gz(path))
            return self.opened[-1]

        monkeypatch.setattr(gzip, "open", counting_open)

    def all_closed(self) -> bool:
        return all(fh.raw.closed for fh in self.opened)


def read_in_batches(reader: Reader, size: int) -> tuple[list[str], int]:
    """Read as the profile builder does: ``size`` records, stop, read again; the names and the batches."""
    seen, batches = [], 0
    while True:
        batch = []
        for record in reader.read():
            batch.append(record.event["event"])
            if len(batch) >= size:
                break
        if not batch:
            return seen, batches
        seen += batch
        batches += 1


class TestBatches:
    def test_reading_a_gz_in_batches_decompresses_it_once(self, tmp_path, monkeypatch):
        """A consumer that stops after every 250 records (as the builder does) and reads on opens each
        gzipped segment once and reads its compressed bytes once, not once a batch; every line once."""
        monkeypatch.setattr(reader_module, "CHUNK", 64 << 10)  # batches end inside chunks and across them
        paths = []
        for s in range(2):
            path = segment(tmp_path, f"part-h_0-{s + 1:06d}.ndjson")
            path.write_bytes(b"".join(varied_line(s * 3000 + i) for i in range(3000)))
            paths.append(segments.compress(path))
        compressed = sum(p.stat().st_size for p in paths)
        gz = CountingGzip(monkeypatch)
        reader = Reader(tmp_path / "events")
        seen, batches = read_in_batches(reader, 250)
        assert seen == [f"E{n}" for n in range(6000)]
        assert batches == 24
        assert len(gz.opened) == 2, f"{len(gz.opened)} openings of 2 gzipped segments over {batches} batches"
        assert gz.raw_bytes <= compressed + 2 * (128 << 10), f"{gz.raw_bytes} compressed bytes read of {compressed}"
        assert set(reader.offsets.values()) == {DONE}
        assert gz.all_closed(), "a finished segment left open"

    def test_reading_a_gz_in_batches_stays_one_chunk_ahead(self, tmp_path, monkeypatch):
        """A batch that ends inside a chunk keeps the rest for the next, which reads those bytes
        before it decompresses more: the reader is never more than one chunk ahead of its cursor
        (it had read a chunk more every batch, and split all it held again each time)."""
        monkeypatch.setattr(reader_module, "CHUNK", 16 << 10)
        path = segment(tmp_path)
        path.write_bytes(b"".join(varied_line(i) for i in range(3000)))
        segments.compress(path)
        reader = Reader(tmp_path / "events")
        seen, ahead = [], []
        while True:
            batch = []
            for record in reader.read():
                batch.append(record.event["event"])
                if len(batch) >= 20:  # about 7 KB: a batch ends inside a chunk
                    break
            if not batch:
                break
            seen += batch
            offset = next(iter(reader.offsets.values()), DONE)
            if offset != DONE:
                ahead.append(reader.stats["bytes"] - offset)
        assert seen == [f"E{n}" for n in range(3000)]
        assert max(ahead) <= 16 << 10, f"{max(ahead)} bytes decompressed ahead of the cursor (a chunk is {16 << 10})"

    def test_a_part_read_gz_is_closed_by_close_and_read_on_from_its_cursor(self, tmp_path, monkeypatch):
        """A reader stopped mid-segment and closed leaves no file open; the next read goes on from
        its cursor (the segment opened again), so does a new reader from the saved cursor."""
        closed_segments(tmp_path, 1, per_segment=100)
        gz = CountingGzip(monkeypatch)
        reader = Reader(tmp_path / "events")
        first = []
        for record in reader.read():
            first.append(record.event["event"])
            if len(first) == 30:
                break
        reader.close()
        assert gz.all_closed(), "close() left the part-read .gz open"
        saved = reader.cursor
        second = []
        for record in reader.read():
            second.append(record.event["event"])
            if len(second) == 30:
                break
        del reader  # collected: what it kept open is closed
        assert gz.all_closed(), "a collected reader left its .gz open"
        resumed = Reader(tmp_path / "events", cursor=saved)
        assert first + names(resumed.read()) == [f"E{n}" for n in range(100)]
        assert first + second == [f"E{n}" for n in range(60)]
        assert gz.all_closed()

    def test_a_cursor_put_back_reads_again_from_there(self, tmp_path, monkeypatch):
        """The builder puts its reader's cursor back when a batch fails: the next read starts there, not
        where the kept-open .gz stopped; a cursor moved elsewhere closes the kept one."""
        closed_segments(tmp_path, 2, per_segment=50)
        gz = CountingGzip(monkeypatch)
        reader = Reader(tmp_path / "events")
        for n, record in enumerate(reader.read()):
            if n == 9:
                break
        before = reader.cursor
        for n, record in enumerate(reader.read()):
            if n == 19:
                break
        reader.cursor = before  # the batch failed: read it again
        again, _ = read_in_batches(reader, 7)
        assert again == [f"E{n}" for n in range(10, 100)]
        assert gz.all_closed()

    def test_a_segment_rewritten_while_part_read_is_read_on_from_the_new_file(self, tmp_path):
        """An erasure rewrites a closed segment the reader stopped in the middle of, removing lines before
        and after the cursor: the next read goes on at the first line it has not read, from the new file
        (not the old one kept open): no line missed, none twice, nothing quarantined (D1)."""
        (path,) = closed_segments(tmp_path, 1, per_segment=40)
        reader = Reader(tmp_path / "events")
        seen = []
        for record in reader.read():
            seen.append(record.event["event"])
            if len(seen) == 10:
                break
        erased = {b'"E5"', b'"E2"', b'"E30"'}
        assert rewrite.rewrite(path, lambda stored: None if any(e in stored for e in erased) else stored) == 3
        seen += names(reader.read())
        assert seen == [f"E{n}" for n in range(40) if n != 30], "a line missed, read twice, or erased and read"
        assert reader.quarantined == 0
        assert reader.cursor == {f"{PARTITION}/{path.name[:-3]}": DONE}

    def test_a_saved_cursor_in_a_segment_rewritten_since_reads_on_at_its_first_unread_line(self, tmp_path):
        """The builder after a restart: a cursor saved in the middle of a closed segment, the segment then
        rewritten (lines before the cursor erased, one shortened), a new reader from the saved cursor:
        every line after the cursor once, in order, nothing quarantined; two rewrites in a row alike (D1)."""
        first, second = closed_segments(tmp_path, 2, per_segment=40)
        reader = Reader(tmp_path / "events")
        seen = []
        for record in reader.read():
            seen.append(record.event["event"])
            if len(seen) == 52:
                break
        saved = json.loads(json.dumps(reader.cursor))
        reader.close()

        def shorten(stored: bytes) -> bytes:
            event = orjson.loads(stored)
            event["pad"] = ""
            return orjson.dumps(event)

        rewrite.rewrite(second, lambda stored: None if b'"E41"' in stored else stored)
        rewrite.rewrite(second, lambda stored: shorten(stored) if b'"E45"' in stored else stored)
        rewrite.rewrite(second, lambda stored: None if b'"E70"' in stored else stored)
        resumed = Reader(tmp_path / "events", cursor=saved)
        seen += names(resumed.read())
        assert seen == [f"E{n}" for n in range(80) if n != 70]
        assert resumed.quarantined == 0

    def test_an_index_into_a_rewritten_segment_still_points_at_its_lines(self, tmp_path):
        """The Profile API's index (positions of lines) stays true across a rewrite: the kept lines are
        where they were, an erased one is simply not there (not quarantined)."""
        (path,) = closed_segments(tmp_path, 1, per_segment=10)
        reader = Reader(tmp_path / "events")
        assert len(list(reader.read())) == 10
        key = f"{PARTITION}/{path.name[:-3]}"
        starts = [0]
        for n in range(9):
            starts.append(starts[-1] + len(line(n)))
        rewrite.rewrite(path, lambda stored: None if b'"E3"' in stored else stored)
        found = reader.lines_at(key, starts)
        assert {starts.index(p): found[p].event["event"] for p in found} == {n: f"E{n}" for n in range(10) if n != 3}
        assert reader.quarantined == 0

    async def test_a_rotating_compressing_store_read_in_batches_gives_every_line_once(self, tmp_path):
        """Segments rotated and compressed while a consumer reads them in small batches (some
        half read as plain files, finished from their .gz): every line exactly once, in order."""
        store = FileStore(tmp_path, segment_max_bytes=3_000)
        await store.start()
        reader, seen = Reader(tmp_path / "events"), []
        for n in range(120):
            await store.append([line(n)], partition=PARTITION)
            if n % 7 == 0:
                batch, _ = read_in_batches_once(reader, 3)
                seen += batch
        await store.close()  # every segment closed and gzipped
        rest, _ = read_in_batches(reader, 5)
        seen += rest
        assert seen == [f"E{n}" for n in range(120)]
        assert len(list((tmp_path / "events").glob("**/*.gz"))) > 5


def read_in_batches_once(reader: Reader, size: int) -> tuple[list[str], int]:
    """One batch of at most ``size`` records."""
    batch = []
    for record in reader.read():
        batch.append(record.event["event"])
        if len(batch) >= size:
            break
    return batch, 1
