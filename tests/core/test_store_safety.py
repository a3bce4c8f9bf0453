"""The file store's data-loss windows (issue 12, items 1-4): each test failed before its fix.

A reused segment name, an undo on a closed descriptor, an unsupervised writer, and segment
churn at the hour boundary. Failures are injected (ENOSPC on one file, an exception in one
commit) where a real fault cannot be placed at the exact moment.
"""

from __future__ import annotations

import asyncio
import errno
import gzip
import os
import shutil
import threading
import time
from pathlib import Path

import orjson
import pytest

from collector.errors import Unavailable
from collector.log.files import FileStore
from collector.log.layout import EVENTS, hour_partition

from helpers import assert_whole, read_events

HOUR10, HOUR11 = "dt=2026-11-28/hr=10", "dt=2026-11-28/hr=11"
DEADLINE = 10  # seconds any single append may take before the test fails instead of hanging


def line(n: int) -> bytes:
    return orjson.dumps({"messageId": f"m{n}", "n": n}) + b"\n"


def segments(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("events/**/part-*") if p.is_file())


async def append(store: FileStore, n: int, partition: str) -> None:
    await asyncio.wait_for(store.append([line(n)], partition=partition), DEADLINE)


async def test_a_lost_sequence_never_reuses_a_segment_name(tmp_path):
    """The lock's counter lost (power cut, deleted .locks/): the next segment takes a new name, none is overwritten."""
    for n in (1, 2, 3):
        store = FileStore(tmp_path)
        await store.start()
        await append(store, n, HOUR10)
        await store.close()
        shutil.rmtree(tmp_path / ".locks")
    assert sorted(e["n"] for e in read_events(tmp_path)) == [1, 2, 3]
    assert len(segments(tmp_path)) == 3 and all(p.suffix == ".gz" for p in segments(tmp_path))


async def test_a_failed_write_after_an_hour_change_leaves_every_segment_whole(tmp_path, monkeypatch):
    """One commit spans two hours and its second write fails: nothing of it is kept, no other file is touched."""
    store = FileStore(tmp_path)
    await store.start()
    await append(store, 1, HOUR10)
    real_write = os.write

    def full_disk_for_hour_11(fd, data):
        if "hr=11" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device (injected)")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_disk_for_hour_11)
    both = [store.append([line(2)], partition=HOUR10), store.append([line(3)], partition=HOUR11)]  # one commit
    results = await asyncio.wait_for(asyncio.gather(*both, return_exceptions=True), DEADLINE)
    assert all(isinstance(r, Unavailable) for r in results), results
    monkeypatch.undo()
    assert (await store.ready())[0]
    await append(store, 4, HOUR11)
    await append(store, 5, HOUR10)
    await store.close()
    assert_whole(tmp_path)
    assert sorted(e["n"] for e in read_events(tmp_path)) == [1, 4, 5]


async def test_an_unexpected_error_in_the_writer_fails_its_waiters_and_the_store_goes_on(tmp_path):
    """A bug in one commit: its requests get a 503 (not a hang), /readyz says so, later commits work."""
    store = FileStore(tmp_path)
    await store.start()
    real_commit, broken = store._commit, []

    def commit_once_broken(batch):
        if not broken:
            broken.append(True)
            raise RuntimeError("a bug, not an OSError")
        return real_commit(batch)

    store._commit = commit_once_broken
    try:
        with pytest.raises(Unavailable) as failed:
            await append(store, 1, HOUR10)
        assert failed.value.code == "store_unavailable"
        assert store.error is not None  # what /readyz reports until the store writes again
        await append(store, 2, HOUR10)
        assert (await store.ready()) == (True, None)
    finally:
        await asyncio.wait_for(store.close(), DEADLINE)
    assert [e["n"] for e in read_events(tmp_path)] == [2]


async def test_late_requests_at_the_hour_boundary_do_not_churn_segments(tmp_path):
    """Just after 11:00, lines alternating between 11 and 10 (late bodies) go to one open segment each."""
    boundary = 1_795_003_200.0  # 2026-11-18T11:00:00Z: on an hour
    clock = [boundary + 5]
    store = FileStore(tmp_path, clock=lambda: clock[0])
    await store.start()
    current, previous = hour_partition(boundary), hour_partition(boundary - 1)
    for n in range(20):
        await append(store, n, (current, previous)[n % 2])
    await store.housekeep()
    assert len(segments(tmp_path)) == 2 and sorted(store.logs[EVENTS].open) == [previous, current]
    clock[0] = boundary + 120  # the late lines are over: the last hour's segment is closed
    await store.housekeep()
    assert sorted(store.logs[EVENTS].open) == [current]
    await store.close()
    assert len(segments(tmp_path)) == 2
    assert sorted(e["n"] for e in read_events(tmp_path)) == list(range(20))


async def test_the_pending_bound_counts_the_commit_under_way(tmp_path):
    """Lines being written count against max_pending_bytes until they are durable, not only queued ones."""
    limit = 50_000
    store = FileStore(tmp_path, max_pending_bytes=limit)
    await store.start()
    real_commit, release = store._commit, threading.Event()

    def slow_commit(batch):
        assert release.wait(DEADLINE), "the test never released the commit"
        return real_commit(batch)

    store._commit = slow_commit
    held, n = [], 0
    try:
        for _ in range(2):  # fill the queue; the writer takes it into a (blocked) commit; fill again
            while True:
                try:
                    held.append(store.append([line(n) + b" " * 1000], partition=HOUR10))
                    n += 1
                except Unavailable as exc:
                    assert exc.code == "store_overloaded"
                    break
            deadline = time.monotonic() + DEADLINE
            while store._pending and time.monotonic() < deadline:  # the writer takes the queue into its commit
                await asyncio.sleep(0.01)
        accepted = sum(len(line(i)) + 1000 for i in range(n))
        assert accepted <= limit + len(line(n)) + 1000, f"{accepted} bytes held against a bound of {limit}"
    finally:
        release.set()
        await asyncio.wait_for(asyncio.gather(*held), DEADLINE)
        await store.close()


async def test_rejected_segments_have_a_retention_and_a_size_cap(tmp_path):
    """Closed dead-letter segments past the retention go, then the oldest past the size cap; open ones stay."""
    now = 1_795_003_200.0  # 2026-11-18
    day = 86400
    root = tmp_path / "rejected"
    for age, name in ((40, "a"), (20, "b"), (10, "c"), (1, "d")):
        partition = root / time.strftime("dt=%Y-%m-%d", time.gmtime(now - age * day))
        partition.mkdir(parents=True, exist_ok=True)
        (partition / f"part-old{name}_0-000001.ndjson.gz").write_bytes(gzip.compress(b"x" * 50_000, mtime=0) + b"\0" * 10_000)
    store = FileStore(tmp_path, clock=lambda: now, rejected_retention_days=30, rejected_max_bytes=15_000)
    await store.start()
    await asyncio.wait_for(store.append([line(1)], partition=time.strftime("dt=%Y-%m-%d", time.gmtime(now)),
                                        log="rejected"), DEADLINE)  # fmt: skip
    await store.housekeep()
    left = sorted(p.name for p in root.glob("*/part-*"))
    await store.close()
    # 40 days: past the retention; 20 and 10 days: the oldest beyond the 15,000-byte cap (about 10 KB each); the open one stays
    assert [n for n in left if n.startswith("part-old")] == ["part-oldd_0-000001.ndjson.gz"]
    assert any(n.endswith(".ndjson") for n in left), left
