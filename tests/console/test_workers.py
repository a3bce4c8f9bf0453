"""With ``--workers 2`` one open stream shows the events both workers stored: the console reads
the log, not the process that serves it."""

from __future__ import annotations

import itertools

from collector.log.layout import parse_name
from helpers import CollectorProcess
from tests.console.conftest import SOURCES, TOKEN, send
from tests.console.sse import Stream


def instance(key: str) -> str:
    """The store instance (worker) that wrote the segment an event id points into."""
    name = key.rsplit("/", 1)[1].split("@", 1)[0]
    return parse_name(name)["instance"]


def test_one_stream_shows_the_events_of_both_workers(tmp_path):
    with CollectorProcess(tmp_path, SOURCES, args=["--workers", "2"], access_token=TOKEN) as collector:
        with Stream(collector.url + "/console/stream?event=Both%20Workers", TOKEN) as stream:
            counter = itertools.count()

            def both() -> bool:
                # each send is a new connection, so the kernel may hand it to either worker
                assert send(collector.url, {"event": "Both Workers", "userId": f"u{next(counter)}"}) == 200
                return len({instance(key) for _, key, _ in stream.of("accepted")}) >= 2

            stream.wait(both, "events stored by two workers on one stream", timeout=60)
            records = stream.records("accepted")
    assert all(r["event"] == "Both Workers" for r in records)
    assert len({r["messageId"] for r in records}) == len(records)
