"""A real collector process: killed with SIGKILL under load, restarted; nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import gzip
import signal
from collections import Counter

import aiohttp
import orjson

from collector.store.files import read_events
from collector.testing import CollectorProcess, eventually

SOURCES = [{"name": "web", "write_key": "wk_test"}]


async def _send(session: aiohttp.ClientSession, url: str, ids: list[str]) -> bool:
    batch = [{"type": "track", "event": "Load", "userId": "u", "messageId": i} for i in ids]
    try:
        async with session.post(url + "/v1/batch", json={"batch": batch}, headers={"X-Write-Key": "wk_test"}) as answer:
            return answer.status == 200
    except aiohttp.ClientError:
        return False


async def acknowledged_count(acknowledged: list[str], count: int, collector: CollectorProcess, timeout: float = 120) -> None:
    """Wait until ``count`` events are acknowledged; fail at once if the collector died, and after ``timeout`` s."""

    def enough() -> bool:
        if collector.proc is None or collector.proc.poll() is not None:
            raise AssertionError(f"the collector exited after acknowledging {len(acknowledged)} events")
        return len(acknowledged) >= count

    await eventually(enough, timeout, what=f"{count} acknowledged events (the collector accepts nothing?)")


def _every_line_is_whole(data_dir) -> None:
    for path in data_dir.glob("**/part-*.ndjson*"):
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        assert raw == b"" or raw.endswith(b"\n"), f"torn line in {path}"
        for line in raw.splitlines():
            orjson.loads(line)


async def test_sigkill_under_load_loses_no_acknowledged_event(tmp_path):
    """Every messageId answered 200 before the kill is stored exactly once after the restart."""
    collector = CollectorProcess(tmp_path, SOURCES).start()
    acknowledged: list[str] = []
    stop = asyncio.Event()

    async def client(worker: int) -> None:
        n = 0
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            while not stop.is_set():
                ids = [f"w{worker}-{n}-{k}" for k in range(5)]
                n += 1
                if await _send(session, collector.url, ids):
                    acknowledged.extend(ids)

    clients = [asyncio.create_task(client(w)) for w in range(16)]
    try:
        await acknowledged_count(acknowledged, 3000, collector)
    finally:
        collector.stop(signal.SIGKILL)
        stop.set()
        await asyncio.gather(*clients)

    restarted = CollectorProcess(tmp_path, SOURCES, port=collector.port).start()
    restarted.stop()
    counts = Counter(event["messageId"] for event in read_events(tmp_path / "data"))
    missing = [i for i in acknowledged if counts[i] == 0]
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {missing[:3]}"
    assert all(counts[i] == 1 for i in acknowledged)
    _every_line_is_whole(tmp_path / "data")
    assert not list((tmp_path / "data/events").glob("**/*.ndjson")), "segments left uncompressed after a clean stop"


async def test_a_resent_message_id_is_stored_once_across_a_restart(tmp_path):
    async with aiohttp.ClientSession() as session:
        with CollectorProcess(tmp_path, SOURCES) as collector:
            assert await _send(session, collector.url, ["again-1", "again-2"])
        with CollectorProcess(tmp_path, SOURCES) as collector:
            assert await _send(session, collector.url, ["again-1", "again-3"])
    ids = sorted(event["messageId"] for event in read_events(tmp_path / "data"))
    assert ids == ["again-1", "again-2", "again-3"]
