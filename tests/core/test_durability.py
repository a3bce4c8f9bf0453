"""A real collector process: killed with SIGKILL under load, restarted; nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter

import aiohttp

from collector.log.reader import read_events
from helpers import CollectorProcess, assert_whole

SOURCES = [{"name": "web", "write_key": "wk_test"}]


async def _send(session: aiohttp.ClientSession, url: str, ids: list[str]) -> bool:
    batch = [{"type": "track", "event": "Load", "userId": "u", "messageId": i} for i in ids]
    try:
        async with session.post(url + "/v1/batch", json={"batch": batch}, headers={"X-Write-Key": "wk_test"}) as answer:
            return answer.status == 200
    except aiohttp.ClientError:
        return False


async def test_sigkill_under_load_loses_no_acknowledged_event(tmp_path):
    """Every messageId answered 200 before the kill is stored exactly once after the restart."""
    collector = CollectorProcess(tmp_path, SOURCES).start()
    acknowledged: list[str] = []
    stop = asyncio.Event()

    async def client(worker: int) -> None:
        n = 0
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                ids = [f"w{worker}-{n}-{k}" for k in range(5)]
                n += 1
                if await _send(session, collector.url, ids):
                    acknowledged.extend(ids)

    clients = [asyncio.create_task(client(w)) for w in range(16)]
    while len(acknowledged) < 3000:
        await asyncio.sleep(0.05)
    collector.stop(signal.SIGKILL)
    stop.set()
    await asyncio.gather(*clients)

    restarted = CollectorProcess(tmp_path, SOURCES, port=collector.port).start()
    restarted.stop()
    counts = Counter(event["messageId"] for event in read_events(tmp_path / "data"))
    missing = [i for i in acknowledged if counts[i] == 0]
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {missing[:3]}"
    assert all(counts[i] == 1 for i in acknowledged)
    assert_whole(tmp_path / "data")
    assert not list((tmp_path / "data/events").glob("**/*.ndjson")), "segments left uncompressed after a clean stop"


async def test_a_resent_message_id_is_stored_once_across_a_restart(tmp_path):
    async with aiohttp.ClientSession() as session:
        with CollectorProcess(tmp_path, SOURCES) as collector:
            assert await _send(session, collector.url, ["again-1", "again-2"])
        with CollectorProcess(tmp_path, SOURCES) as collector:
            assert await _send(session, collector.url, ["again-1", "again-3"])
    ids = sorted(event["messageId"] for event in read_events(tmp_path / "data"))
    assert ids == ["again-1", "again-2", "again-3"]
