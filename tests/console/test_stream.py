"""The live stream (``GET /console/stream``): every stored event and dead letter, filtered on the server,
resumed with Last-Event-ID, and a viewer that never reads costs it dropped events, never ingest."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from collector.config import Config
from collector.console.filters import Filter, rejected_message
from collector.console.follower import QUEUE, Follower, Item
from tests.console.conftest import TOKEN, batch, call, send
from tests.console.sse import Stream


def tag() -> str:
    return uuid.uuid4().hex[:10]


def ids(records: list[dict], marker: str) -> list[str]:
    return [r.get("properties", {}).get("n") for r in records if r.get("properties", {}).get("run") == marker]


def test_a_track_appears_as_stored_and_a_rejected_message_with_its_code(collector):
    run = tag()
    with Stream(collector.url + "/console/stream", TOKEN) as stream:
        assert stream.status == 200
        assert send(collector.url, {"event": "Signed Up", "userId": "u_" + run, "properties": {"run": run}}) == 200
        assert send(collector.url, {"userId": "u_" + run, "properties": {"run": run}}) == 400  # no event name
        stream.wait(lambda: len([r for r in stream.records() if run in json.dumps(r)]) >= 2, "both records")
        (accepted_id, accepted), = [(i, d) for k, i, d in stream.of("accepted") if run in d["raw"]]
        (rejected_id, rejected), = [(i, d) for k, i, d in stream.of("rejected") if run in d["raw"]]
    stored = json.loads(accepted["raw"])
    assert stored["event"] == "Signed Up" and stored["source"] == "web" and "receivedAt" in stored and "context" in stored
    assert accepted_id == accepted["key"] and accepted_id.startswith("events/dt=")
    dead = json.loads(rejected["raw"])
    assert dead["code"] == "missing_event" and dead["message"] and json.loads(dead["payload"])["userId"] == "u_" + run
    assert rejected_id.startswith("rejected/dt=")


FILTERS = {
    "source=server": lambda m: m["_key"] == "wk_console_server",
    "type=identify": lambda m: m["_kind"] == "identify",
    "event=Order%20Completed": lambda m: m.get("event") == "Order Completed",
    "user=u_two": lambda m: m.get("userId") == "u_two",
    "user=anon_three": lambda m: m.get("anonymousId") == "anon_three",
    "status=rejected": lambda m: m["_kind"] == "track" and "event" not in m,
    "status=accepted": lambda m: not (m["_kind"] == "track" and "event" not in m),
    "q=FINDME": lambda m: "findme" in json.dumps(m).lower(),
}


def test_each_filter_narrows_the_stream(collector):
    run = tag()
    messages = [
        {"_kind": "track", "_key": "wk_console", "event": "Order Completed", "userId": "u_one"},
        {"_kind": "track", "_key": "wk_console_server", "event": "Product Viewed", "userId": "u_two"},
        {"_kind": "identify", "_key": "wk_console", "userId": "u_one", "traits": {"note": "findme please"}},
        {"_kind": "page", "_key": "wk_console", "anonymousId": "anon_three", "name": "Home"},
        {"_kind": "track", "_key": "wk_console_server", "userId": "u_two"},  # rejected: no event name
        {"_kind": "track", "_key": "wk_console", "event": "Order Completed", "anonymousId": "anon_three"},
    ]
    for n, message in enumerate(messages):
        message["properties" if message["_kind"] != "identify" else "context"] = {"run": run, "n": str(n)}
    streams = {query: Stream(f"{collector.url}/console/stream?{query}&q={run}" if not query.startswith("q=")
                             else f"{collector.url}/console/stream?q={query[2:]}", TOKEN) for query in FILTERS}  # fmt: skip
    everything = Stream(f"{collector.url}/console/stream?q={run}", TOKEN)
    try:
        for message in messages:
            body = {k: v for k, v in message.items() if not k.startswith("_")}
            send(collector.url, body, write_key=message["_key"], kind=message["_kind"])

        def numbers(stream):
            found = []
            for record in stream.records():
                payload = rejected_message(record.get("payload")) if "code" in record else record
                where = payload.get("properties") or payload.get("context") or {}
                if where.get("run") == run:
                    found.append(where["n"])
            return sorted(found)

        everything.wait(lambda: len(numbers(everything)) == len(messages), "every message on the unfiltered stream")
        for query, select in FILTERS.items():
            expected = sorted(str(n) for n, m in enumerate(messages) if select(m))
            assert 0 < len(expected) < len(messages), query
            streams[query].wait(lambda: numbers(streams[query]) == expected, f"{query}: {expected}, got {numbers(streams[query])}")
    finally:
        for stream in [*streams.values(), everything]:
            stream.close()


@pytest.mark.parametrize("query", ["status=maybe", "type=purchase", "source=" + "x" * 2000])
def test_a_bad_filter_is_a_400_with_a_code(collector, query):
    status, _, body = call(f"{collector.url}/console/stream?{query}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 400 and json.loads(body)["code"] == "invalid_parameter"


def test_a_reconnect_with_last_event_id_resumes_where_it_stopped(collector):
    run = tag()
    query = f"{collector.url}/console/stream?q={run}"
    with Stream(query, TOKEN) as first:
        send(collector.url, {"event": "One", "userId": "u", "properties": {"run": run, "n": "1"}})
        first.wait(lambda: ids(first.records(), run) == ["1"], "the first event")
        last_id = first.of("accepted")[-1][1]
    for n in ("2", "3"):
        send(collector.url, {"event": "Later", "userId": "u", "properties": {"run": run, "n": n}})
    with Stream(query, TOKEN) as fresh:  # a new viewer gets what is buffered
        fresh.wait(lambda: ids(fresh.records(), run) == ["1", "2", "3"], "the backlog")
    with Stream(query, TOKEN, last_id=last_id) as resumed:
        resumed.wait(lambda: ids(resumed.records(), run) == ["2", "3"], "the events after the last id, and only them")
        assert resumed.of("gap") == []
        send(collector.url, {"event": "Live", "userId": "u", "properties": {"run": run, "n": "4"}})
        resumed.wait(lambda: ids(resumed.records(), run) == ["2", "3", "4"], "then live")
    with Stream(query, TOKEN, last_id="events/dt=2000-01-01/hr=00/part-x-000001.ndjson@10") as unknown:
        unknown.wait(lambda: unknown.of("gap"), "a gap notice for an id no longer buffered")


def test_a_viewer_that_never_reads_has_events_dropped_and_counted_not_ingest_slowed(collector):
    """Open, never read, while 12,000 events are stored: ingest answers all of them; the viewer,
    reading at last, gets some and is told how many were dropped: together, all of them."""
    run = tag()
    total = 12_000
    with Stream(f"{collector.url}/console/stream?q={run}", TOKEN, paused=True, receive_buffer=4096) as idle:
        for start in range(0, total, 2000):
            messages = [{"type": "track", "event": "Bulk", "userId": "u_bulk", "properties": {"run": run, "n": str(i)}}
                        for i in range(start, start + 2000)]  # fmt: skip
            assert batch(collector.url, messages) == 200
        with Stream(f"{collector.url}/console/stream?q={run}&event=Bulk", TOKEN) as reader:
            reader.wait(lambda: len(ids(reader.records(), run)) >= 100, "a reading viewer keeps up")
        idle.resume()

        def accounted():
            dropped = max([d["dropped"] for _, _, d in idle.of("dropped")] or [0])
            return dropped and len(ids(idle.records(), run)) + dropped == total

        idle.wait(accounted, "received + dropped == sent", timeout=60)


async def test_the_follower_never_waits_for_a_viewer():
    """Fan-out puts into bounded queues without waiting: past ``QUEUE`` an item is dropped and counted."""
    follower = Follower(Config())
    slow, picky = follower.join(Filter(), None)[0], follower.join(Filter(type="identify"), None)[0]
    for n in range(QUEUE + 50):
        record = {"type": "track", "event": "E", "userId": "u", "receivedAt": "2026-12-02T00:00:00.000Z", "source": "web"}
        follower.publish(Item(f"events/x@{n}", "accepted", record, json.dumps(record).encode()))
    assert len(slow.items) == QUEUE and slow.dropped == 50
    assert len(picky.items) == 0 and picky.dropped == 0
    await asyncio.sleep(0)
