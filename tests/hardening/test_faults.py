"""Faults: a full disk, SIGKILL during rotation and compression, a clock jumping backwards.

No acknowledged event is lost, no segment is corrupt, the answers are clear 503s while the
fault lasts, and the collector recovers by itself when it clears.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter

import aiohttp
import pytest

from collector.app import STATE
from collector.log.layout import hour_partition

from helpers import CollectorProcess, assert_whole, read_events
from tests.conftest import stored
from tests.core.test_durability import acknowledged_count

KEY = {"X-Write-Key": "wk_web"}


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs mounted by the test, the data directory on it; None when not root."""
    if os.geteuid() != 0:
        yield None
        return
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def run_as_namespace_root(request) -> None:
    """Run this one test again as root of a user and mount namespace of its own (no real root needed)."""
    cmd = ["unshare", "--user", "--map-root-user", "--mount",
           sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", request.node.nodeid]  # fmt: skip
    run = subprocess.run(cmd, cwd=request.config.rootpath, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, (
        "the full-disk test mounts a small tmpfs: run as root, or allow user namespaces "
        f"(sysctl kernel.unprivileged_userns_clone=1)\n{run.stdout[-3000:]}{run.stderr[-2000:]}")


async def test_full_disk_gives_503_loses_nothing_and_recovers(request, make_client, config, small_disk):
    from dataclasses import replace

    if small_disk is None:
        return run_as_namespace_root(request)
    filler = small_disk / "filler"
    filler.write_bytes(os.urandom(1_400_000))  # leave about 600 KB
    client = await make_client(replace(config, data_dir=small_disk / "data"))
    accepted, refused, n = [], 0, 0
    while refused < 3 and n < 5000:
        ids = [f"m{n}-{k}" for k in range(20)]
        batch = {"batch": [{"type": "track", "userId": "u", "event": "Fill", "messageId": i, "properties": {"pad": "x" * 500}} for i in ids]}
        answer = await client.post("/v1/batch", json=batch, headers=KEY)
        n += 1
        if answer.status == 200:
            accepted += ids
        else:
            assert answer.status == 503 and (await answer.json())["code"] == "store_unavailable"
            assert answer.headers["Retry-After"]
            refused += 1
    assert refused == 3 and accepted, "the disk never filled up"
    ready = await client.get("/readyz")
    assert ready.status == 503 and (await ready.json())["reason"] == "disk full"

    filler.unlink()  # the operator frees space: no restart needed
    assert (await client.get("/readyz")).status == 200
    later = await client.post("/v1/track", json={"userId": "u", "event": "After", "messageId": "after"}, headers=KEY)
    assert later.status == 200
    await client.close()
    counts = Counter(e["messageId"] for e in read_events(small_disk / "data"))
    assert all(counts[i] == 1 for i in accepted + ["after"])
    assert_whole(small_disk / "data")


async def _load(url: str, stop: asyncio.Event, acknowledged: list[str], worker: int) -> None:
    n = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        while not stop.is_set():
            ids = [f"w{worker}-{n}-{k}" for k in range(10)]
            n += 1
            batch = [{"type": "track", "event": "E", "userId": "u", "messageId": i, "properties": {"p": "y" * 200}} for i in ids]
            try:
                async with session.post(url + "/v1/batch", json={"batch": batch}, headers={"X-Write-Key": "wk_test"}) as r:
                    if r.status == 200:
                        acknowledged.extend(ids)
            except aiohttp.ClientError:
                pass


@pytest.mark.parametrize("kill_after", [1500, 4000])
async def test_sigkill_during_rotation_and_compression(tmp_path, kill_after):
    """Tiny segments rotate and gzip all the time; a SIGKILL lands among them; the restart repairs all."""
    sources = [{"name": "web", "write_key": "wk_test"}]
    collector = CollectorProcess(tmp_path, sources, segment_max_bytes=16_384).start()
    acknowledged: list[str] = []
    stop = asyncio.Event()
    clients = [asyncio.create_task(_load(collector.url, stop, acknowledged, w)) for w in range(8)]
    try:
        await acknowledged_count(acknowledged, kill_after, collector)
    finally:
        collector.stop(signal.SIGKILL)
        stop.set()
        await asyncio.gather(*clients)
    assert len(list((tmp_path / "data/events").glob("**/part-*"))) > 5, "no rotation happened before the kill"

    CollectorProcess(tmp_path, sources, port=collector.port, segment_max_bytes=16_384).start().stop()
    counts = Counter(e["messageId"] for e in read_events(tmp_path / "data"))
    lost = [i for i in acknowledged if counts[i] != 1]
    assert not lost, f"{len(lost)} acknowledged events not stored exactly once"
    assert_whole(tmp_path / "data")
    assert not list((tmp_path / "data/events").glob("**/*.ndjson")), "segments left uncompressed"


async def test_clock_jumping_backwards(make_client, config):
    """receivedAt goes back two hours and forward again: every event is kept, in the partition of its receivedAt.

    Each message is stamped 10:30, between the clock before the jump (11:06) and after it
    (09:06): after the jump the stamp is in the future, and is clamped to receivedAt.
    """
    client = await make_client(config)
    state = client.server.app[STATE]
    now = 1_795_000_000.0  # 2026-11-18T11:06:40Z
    stamp = "2026-11-18T10:30:00.000Z"
    for t, name in ((now, "before"), (now - 7200, "after the jump"), (now + 1, "clock fixed")):
        state.clock = lambda t=t: t
        answer = await client.post("/v1/track", json={"userId": "u", "event": name, "timestamp": stamp}, headers=KEY)
        assert answer.status == 200
    await client.close()
    events = {e["event"]: e for e in stored(config.data_dir)}
    assert sorted(events) == ["after the jump", "before", "clock fixed"]
    assert [events[name]["receivedAt"] for name in ("before", "after the jump", "clock fixed")] == [
        "2026-11-18T11:06:40.000Z", "2026-11-18T09:06:40.000Z", "2026-11-18T11:06:41.000Z",
    ]  # fmt: skip
    assert events["after the jump"]["timestamp"] == events["after the jump"]["receivedAt"], "a timestamp in the future"
    assert events["before"]["timestamp"] == events["clock fixed"]["timestamp"] == stamp
    assert all(e["originalTimestamp"] == stamp for e in events.values())
    partitions = {p.parent.relative_to(config.data_dir / "events").as_posix() for p in (config.data_dir / "events").glob("**/part-*")}
    assert partitions == {hour_partition(now), hour_partition(now - 7200)}
    assert_whole(config.data_dir)
