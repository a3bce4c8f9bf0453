"""Destinations on the NATS store: the filler follows the JetStream stream (its cursor the last
sequence, committed with the deliveries), so an event's 200 becomes a signed webhook."""

from __future__ import annotations

import asyncio

from helpers import eventually
from tests.destinations.conftest import receivers, write_destination  # noqa: F401 - the fixture
from tests.profiles.killing import send


async def test_an_event_on_the_stream_arrives_as_a_webhook(nats_server, collectors, receivers, tmp_path):  # noqa: F811
    receiver = await receivers()
    engage = tmp_path / "engage"
    write_destination(engage, "crm", url=receiver.url)
    collector = await collectors("c1", "--store", "nats", "--nats-url", nats_server.url, engage_dir=str(engage))
    events = [{"type": "track", "userId": "u-1", "event": "Order Completed", "messageId": f"n-{i}"} for i in range(3)]
    assert await asyncio.to_thread(send, collector.url, events)
    await eventually(lambda: len(receiver.got) >= 3, 30, what="three webhooks")
    assert sorted(r.json["data"]["messageId"] for r in receiver.got) == ["n-0", "n-1", "n-2"]
    assert all(r.verified for r in receiver.got)
