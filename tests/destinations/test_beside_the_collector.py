"""``intilery serve`` runs the destinations process beside the collector when there are destination
files: an event's 200, then its webhook at the receiver."""

from __future__ import annotations

import asyncio

import aiohttp

from helpers import CollectorProcess, eventually

from .conftest import write_destination


async def test_an_accepted_event_arrives_as_a_webhook(tmp_path, receivers):
    receiver = await receivers()
    engage = tmp_path / "engage"
    write_destination(engage, "crm", url=receiver.url)
    collector = CollectorProcess(tmp_path, engage_dir=str(engage))
    await asyncio.to_thread(collector.start)
    try:
        async with aiohttp.ClientSession() as client:
            answer = await client.post(collector.url + "/v1/track", headers={"X-Write-Key": "wk_test"},
                                       json={"event": "Order Completed", "userId": "u1", "messageId": "m-e2e"})  # fmt: skip
            assert answer.status == 200
        await eventually(lambda: receiver.got, 30, what="the webhook")
    finally:
        await asyncio.to_thread(collector.stop)
    (got,) = receiver.got
    assert got.verified and got.json["data"]["messageId"] == "m-e2e" and got.json["data"]["event"] == "Order Completed"
