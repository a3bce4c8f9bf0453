"""``intilery serve`` runs the destinations process beside the collector when there are destination
files: an event's 200, then its webhook at the receiver; a SIGHUP to the collector reaches it."""

from __future__ import annotations

import asyncio
import signal

import aiohttp

from helpers import CollectorProcess, eventually

from .conftest import write_destination


async def post(url: str, message_id: str) -> None:
    async with aiohttp.ClientSession() as client:
        answer = await client.post(url + "/v1/track", headers={"X-Write-Key": "wk_test"},
                                   json={"event": "Order Completed", "userId": "u1", "messageId": message_id})  # fmt: skip
        assert answer.status == 200


async def test_an_accepted_event_arrives_as_a_webhook_and_sighup_reads_the_files_again(tmp_path, receivers):
    receiver, moved = await receivers(), await receivers()
    engage = tmp_path / "engage"
    write_destination(engage, "crm", url=receiver.url)
    collector = CollectorProcess(tmp_path, engage_dir=str(engage))
    await asyncio.to_thread(collector.start)
    try:
        await post(collector.url, "m-e2e")
        await eventually(lambda: receiver.got, 30, what="the webhook")
        write_destination(engage, "crm", url=moved.url)
        collector.proc.send_signal(signal.SIGHUP)  # passed on to the destinations process
        await asyncio.sleep(0.5)  # not a wait for a result: the reload is asked for, then the event comes
        await post(collector.url, "m-moved")
        await eventually(lambda: moved.got, 30, what="the webhook at the new url")
    finally:
        await asyncio.to_thread(collector.stop)
    (got,) = receiver.got
    assert got.verified and got.json["data"]["messageId"] == "m-e2e" and got.json["data"]["event"] == "Order Completed"


def test_a_mistake_in_a_destination_stops_the_collector_at_start_with_its_file_and_line(tmp_path):
    engage = tmp_path / "engage"
    path = write_destination(engage, "crm", url="https://hooks.example.com/in")
    path.write_text(path.read_text().replace('"url"', '"uri"'))
    collector = CollectorProcess(tmp_path, engage_dir=str(engage))
    try:
        collector.start()
    except RuntimeError as exc:
        said = str(exc)
    else:
        collector.stop()
        raise AssertionError("the collector started with a broken destination")
    assert f"{path}:1: unknown key 'uri'" in said and "Traceback" not in said
