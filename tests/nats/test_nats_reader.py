"""The reader's interface over the stream: resumed cursor, quarantined bad line, idle read."""

from __future__ import annotations

import json
from contextlib import aclosing

import orjson

from collector.config import Config
from collector.log.layout import EVENTS, hour_partition
from collector.log.nats import NatsStore
from collector.log.stream_reader import StreamReader


def event(n: int) -> bytes:
    return orjson.dumps({"type": "track", "event": f"E{n}", "userId": "u", "messageId": f"m{n}"}) + b"\n"


async def publish(store: NatsStore, numbers: range) -> None:
    await store.append([event(n) for n in numbers], partition=hour_partition(0), ids=[f"m{n}" for n in numbers], source="web")


async def names(reader: StreamReader, stop_after: int | None = None) -> list[str]:
    seen = []
    async with aclosing(reader.read()) as records:
        async for record in records:
            seen.append(record.event["event"])
            if len(seen) == stop_after:
                break
    return seen


async def test_a_resumed_cursor_misses_nothing_and_repeats_nothing(nats_server, publisher):
    """Read part of the stream, save the cursor as JSON, resume in a new reader: every message once."""
    await publish(publisher, range(0, 40))
    config = Config(store="nats", nats_url=nats_server.url)
    first = StreamReader(config)
    seen = await names(first, stop_after=15)
    saved = json.dumps(first.cursor)
    await first.close()
    await publish(publisher, range(40, 60))
    resumed = StreamReader(config, cursor=json.loads(saved))
    seen += await names(resumed)
    await resumed.close()
    assert seen == [f"E{n}" for n in range(60)]


async def test_a_malformed_message_is_quarantined_and_an_idle_read_fetches_nothing(nats_server, publisher):
    """A message that is not a JSON object is counted and skipped; reading again at the end fetches nothing."""
    await publish(publisher, range(0, 3))
    await publisher.append([b"not json\n"], partition=hour_partition(0), ids=["bad"], source="web")
    await publish(publisher, range(3, 5))
    reader = StreamReader(Config(store="nats", nats_url=nats_server.url), log_name=EVENTS)
    try:
        assert await names(reader) == [f"E{n}" for n in range(5)]
        assert reader.quarantined == 1
        fetched = reader.stats["fetched"]
        for _ in range(10):
            assert await names(reader) == []
        assert reader.stats["fetched"] == fetched
    finally:
        await reader.close()
