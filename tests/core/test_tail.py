"""``intilery tail`` follows the store across rotation and compression."""

from __future__ import annotations

import io

import orjson

from collector.log.files import FileStore
from collector.log.reader import Reader
from collector.log.tail import describe, follow

PARTITION = "dt=2026-11-28/hr=10"


def event(n: int) -> bytes:
    return orjson.dumps({"type": "track", "event": f"E{n}", "userId": "u", "messageId": f"m{n}", "pad": "x" * 300}) + b"\n"


async def test_follows_new_lines_across_rotation_and_gzip(tmp_path):
    store = FileStore(tmp_path, segment_max_bytes=2_000)
    await store.start()
    await store.append([event(0)], partition=PARTITION)
    follower = Reader.at_end(tmp_path / "events")  # starts at the end: E0 is history
    seen: list[str] = []
    for n in range(1, 20):
        await store.append([event(n)], partition=PARTITION)
        if n % 3 == 0:
            seen += [orjson.loads(line)["event"] for line, _segment in follower.lines()]
    await store.close()  # every segment closed and gzipped
    seen += [orjson.loads(line)["event"] for line, _segment in follower.lines()]
    assert seen == [f"E{n}" for n in range(1, 20)]
    assert len(list((tmp_path / "events").glob("**/*.gz"))) > 3


def test_readable_line_and_json_mode(tmp_path):
    partition = tmp_path / "events" / PARTITION
    partition.mkdir(parents=True)
    stored = {
        "type": "page", "name": "Home", "anonymousId": "a-123456789012345", "receivedAt": "2026-11-28T10:01:02.345Z",
        "source": "web", "context": {"page": {"path": "/"}, "browser": {"name": "Chrome"}, "os": {"name": "Linux"},
                                     "device": {"type": "desktop"}, "location": {"city": "London", "countryCode": "GB"}},
    }  # fmt: skip
    line = describe(stored)
    for part in ("10:01:02.345", "page", "Home", "anon=a-1234567890", "page=/", "ua=Chrome/Linux/desktop", "loc=London,GB"):
        assert part in line
    (partition / "part-h_0-000001.ndjson").write_bytes(orjson.dumps(stored) + b"\n")
    out, polls = io.StringIO(), iter([True, False])
    follow(tmp_path, as_json=True, from_start=True, interval=0, out=out, keep_going=lambda: next(polls))
    assert orjson.loads(out.getvalue()) == stored
