"""With ``--workers 2`` one open stream shows the events every worker answered: the console reads
the log, not the process that serves it."""

from __future__ import annotations

from helpers import CollectorProcess
from tests.console.conftest import SOURCES, TOKEN, send
from tests.console.sse import Stream

SENT = 40  # each over a new connection: the kernel spreads them over both workers (all 40 on the
# stream's own worker would be a chance of one in 2**40)


def test_one_stream_shows_the_events_of_both_workers(tmp_path):
    with CollectorProcess(tmp_path, SOURCES, args=["--workers", "2"], access_token=TOKEN) as collector:
        with Stream(collector.url + "/console/stream?event=Both%20Workers", TOKEN) as stream:
            for n in range(SENT):
                assert send(collector.url, {"event": "Both Workers", "userId": f"u{n}"}) == 200
            stream.wait(lambda: len(stream.records("accepted")) >= SENT, f"the {SENT} events on one stream", timeout=60)
            records = stream.records("accepted")
    assert all(r["event"] == "Both Workers" for r in records)
    assert sorted(r["userId"] for r in records) == sorted(f"u{n}" for n in range(SENT))
