"""``intilery archive``: the stream written out as the file store's layout, exactly once, whatever kills it."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import orjson
from natsprocs import consumer_drained, output_ids, output_lines, output_segments

from collector.log.archive import Archiver, ArchiveStore
from collector.log.jetstream import message_id_header
from collector.config import Config
from collector.log.files import FileStore
from collector.log.layout import EVENTS, REJECTED, day_partition, hour_partition, iso_ms
from collector.log.nats import NatsStore
from helpers import eventually

HOUR = 3600


def make_events(count: int, start: int = 0, received_at: float | None = None) -> list[tuple[str, bytes]]:
    """(messageId, stored line) pairs shaped like the collector's stored events."""
    received_at = time.time() if received_at is None else received_at
    events = []
    for i in range(start, start + count):
        message_id = f"evt-{i:07d}"
        line = orjson.dumps({
            "type": "track", "event": "Order Completed", "userId": f"u{i % 97}", "messageId": message_id,
            "properties": {"n": i, "note": "x" * 120}, "receivedAt": iso_ms(received_at),
            "timestamp": iso_ms(received_at), "source": "web", "context": {"ip": "203.0.113.0"},
        }) + b"\n"  # fmt: skip
        events.append((message_id, line))
    return events


def dead_letter(code: str, n: int, received_at: float) -> bytes:
    record = {"receivedAt": iso_ms(received_at), "source": "web", "code": code, "message": "bad", "payload": f"#{n}"}
    return orjson.dumps(record) + b"\n"


async def publish(store: NatsStore, events: list[tuple[str, bytes]], partition: str, chunk: int = 500) -> None:
    for i in range(0, len(events), chunk):
        part = events[i : i + chunk]
        await store.append([line for _, line in part], partition=partition, ids=[m for m, _ in part], source="web")


def line_count(data_dir: Path) -> int:
    return sum(content.count(b"\n") for content in output_segments(data_dir).values())


class TestLayout:
    async def test_archive_writes_what_the_file_store_writes(self, tmp_path, nats_server, publisher):
        """The same lines given to the file store and published then archived give identical partitions."""
        now = time.time()
        batches = [
            (EVENTS, hour_partition(now - HOUR), make_events(300, 0, now - HOUR)),
            (EVENTS, hour_partition(now), make_events(500, 300, now)),
            (REJECTED, day_partition(now), [(None, dead_letter("invalid_json", n, now)) for n in range(20)]),
        ]
        file_store = FileStore(tmp_path / "file")
        await file_store.start()
        for log_name, partition, events in batches:
            lines = [line for _, line in events]
            ids = [m for m, _ in events] if log_name == EVENTS else None
            await file_store.append(lines, partition=partition, log=log_name, ids=ids, source="web")
            await publisher.append(lines, partition=partition, log=log_name, ids=ids, source="web")
        await file_store.close()

        archiver = Archiver(Config(store="nats", nats_url=nats_server.url, data_dir=tmp_path / "archive"))
        stop = asyncio.Event()
        running = asyncio.create_task(archiver.run(stop))
        await eventually(lambda: consumer_drained(nats_server.url), what="the archive to catch up")
        stop.set()
        await running

        def by_partition(root: Path, log_name: str) -> dict[str, bytes]:
            found: dict[str, bytes] = {}
            for path, content in output_segments(root, log_name).items():
                partition = path.parent.relative_to(root / log_name).as_posix()
                found[partition] = found.get(partition, b"") + content
            return found

        for log_name in (EVENTS, REJECTED):
            expected = by_partition(tmp_path / "file", log_name)
            assert expected, f"the file store wrote nothing under {log_name}/"
            assert by_partition(tmp_path / "archive", log_name) == expected
        assert not list((tmp_path / "archive").glob("**/*.ndjson")), "every segment is compressed at shutdown"


class TestCrashes:
    async def test_killed_mid_write_then_restarted(self, tmp_path, nats_server, publisher, archives):
        """A SIGKILL mid-write, a torn line and a written-but-unacknowledged line: restart gives each event once."""
        out = tmp_path / "out"
        partition = hour_partition(time.time())
        events = make_events(20_000)
        await publish(publisher, events, partition)
        archive = await archives(out, nats_server.url, "--batch", "50", "--ack-wait", "2")
        await eventually(lambda: line_count(out) >= 2_000, what="the archive to write part of the stream")
        archive.kill()

        # The two crash windows, made certain with events the dead process never saw: one
        # line written (and fsynced) whose ack never left, one line cut short by the kill.
        extra = make_events(100, start=len(events))
        await publish(publisher, extra, partition)
        events += extra
        open_segments = sorted((out / EVENTS / partition).glob("part-*.ndjson"))
        segment = open_segments[-1] if open_segments else out / EVENTS / partition / "part-crashed_0-000001.ndjson"
        written_line, torn_line = extra[0][1], extra[1][1]
        with open(segment, "ab") as fh:
            fh.write(written_line + torn_line[: len(torn_line) // 2])

        archive = await archives(out, nats_server.url, "--batch", "50", "--ack-wait", "2")
        await eventually(lambda: consumer_drained(nats_server.url), timeout=60, what="the archive to catch up")
        assert await asyncio.to_thread(archive.stop) == 0

        counts = Counter(output_ids(out))  # fails on a torn line
        assert {m for m, n in counts.items() if n > 1} == set()
        assert set(counts) == {m for m, _ in events}
        assert not (out / REJECTED).exists() or output_lines(out, REJECTED) == []
        assert not list(out.glob("**/*.ndjson")), "the dead instance's segment was recovered and compressed"

    async def test_two_archives_share_the_work_and_one_dies(self, tmp_path, nats_server, publisher, archives):
        """Two processes on one consumer both write; when one is killed the other finishes, each event once."""
        out = tmp_path / "out"
        partition = hour_partition(time.time())
        first = await archives(out, nats_server.url, "--batch", "50", "--ack-wait", "2", name="a")
        await archives(out, nats_server.url, "--batch", "50", "--ack-wait", "2", name="b")
        events = make_events(20_000)
        await publish(publisher, events[:10_000], partition)
        await eventually(lambda: line_count(out) >= 2_000, what="the archives to write part of the stream")
        first.kill()
        await publish(publisher, events[10_000:], partition)
        await eventually(lambda: consumer_drained(nats_server.url), timeout=60, what="the survivor to catch up")

        counts = Counter(output_ids(out))
        assert {m for m, n in counts.items() if n > 1} == set()
        assert set(counts) == {m for m, _ in events}
        writers = {path.name.rsplit("-", 1)[0] for path in output_segments(out)}
        assert len(writers) == 2, f"both processes wrote segments: {writers}"


class _Msg:
    """Just enough of a nats-py message for Archiver._write."""

    def __init__(self, subject: str, data: bytes, headers: dict, delivered: int) -> None:
        self.subject, self.data, self.headers = subject, data, headers
        self.metadata = SimpleNamespace(num_delivered=delivered)
        self.acked = self.naked = False

    async def ack(self) -> None:
        self.acked = True

    async def nak(self, delay: float | None = None) -> None:
        self.naked = True


class TestRedelivery:
    async def test_redelivered_line_already_on_disk_is_not_written_again(self, tmp_path):
        """A redelivery of a line another (dead) process wrote after this one started is acknowledged, not rewritten."""
        out = tmp_path / "out"
        config = Config(store="nats", data_dir=out)
        archiver = Archiver(config)
        store = ArchiveStore(out, fsync="always")
        await store.start()
        try:
            partition = hour_partition(time.time())
            (written_id, written), (new_id, new) = make_events(2)
            other = out / EVENTS / partition / "part-other_0-000001.ndjson"
            other.parent.mkdir(parents=True, exist_ok=True)
            other.write_bytes(written)  # by another process, after this one seeded its filter

            def msg(message_id: str, line: bytes, delivered: int) -> _Msg:
                headers = {"Nats-Msg-Id": message_id_header("web", message_id), "Intilery-Partition": partition}
                return _Msg("intilery.events.web", line, headers, delivered)

            batch = [msg(written_id, written, 2), msg(new_id, new, 1), msg(new_id, new, 1)]
            await archiver._write(batch, store)
        finally:
            await store.close()
        assert all(m.acked for m in batch)
        mine = [c for p, c in output_segments(out).items() if "part-other" not in p.name]
        assert b"".join(mine) == new
