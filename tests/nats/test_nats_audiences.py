"""Audiences on the NATS store: the evaluation follows the stream, and a definition added later is
counted over the stream from its start."""

from __future__ import annotations

import asyncio

from helpers import wait_until
from tests.engage.test_serve import define, members
from tests.profiles.killing import send


async def test_audiences_follow_the_stream_and_a_new_one_counts_it_from_the_start(nats_server, collectors, tmp_path):
    define(tmp_path / "c1", "audiences", "clicked", "condition: {event: Clicked}\n")
    collector = await collectors("c1", "--store", "nats", "--nats-url", nats_server.url)
    assert await asyncio.to_thread(send, collector.url, [
        {"type": "track", "event": "Clicked", "userId": "u-1"},
        {"type": "track", "event": "Order Completed", "userId": "u-2", "properties": {"revenue": 80}},
    ])  # fmt: skip
    await asyncio.to_thread(wait_until, lambda: members(collector.data_dir, "clicked") == {"u-1"}, 30, 0.1,
                            "u-1 in the audience, from the stream")  # fmt: skip
    define(tmp_path / "c1", "audiences", "buyers", "condition: {event: Order Completed}\n")
    await asyncio.to_thread(wait_until, lambda: members(collector.data_dir, "buyers") == {"u-2"}, 30, 0.1,
                            "the new audience, counted over the stream")  # fmt: skip
