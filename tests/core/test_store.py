"""The file log store: layout, group commit, rotation, compression, recovery, failures."""

from __future__ import annotations

import asyncio
import gzip
import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest

from collector.errors import Unavailable
from helpers import read_events
from collector.log.files import FileStore
from collector.log.layout import hour_partition

from tests.conftest import stored

KEY = {"X-Write-Key": "wk_web"}


def line(n: int, pad: int = 0) -> bytes:
    return orjson.dumps({"messageId": f"m{n}", "n": n, "pad": "x" * pad}) + b"\n"


def files(root: Path, pattern: str = "**/part-*") -> list[Path]:
    return sorted(p for p in root.glob(pattern) if p.is_file())


@contextmanager
def unwritable(path: Path):
    """Make a directory refuse new entries, even for root (chattr +i), else by its mode."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(path)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        mode = path.stat().st_mode
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(mode)


class TestFileStore:
    async def test_layout_and_group_commit(self, tmp_path):
        """Concurrent appends share commits; lines land in dt=/hr= partitions under a locked instance name."""
        store = FileStore(tmp_path)
        await store.start()
        partition = hour_partition(1_795_000_000)
        await asyncio.gather(*(store.append([line(i)], partition=partition) for i in range(200)))
        [segment] = files(tmp_path / "events")
        assert segment.parent.relative_to(tmp_path / "events").as_posix() == partition
        assert segment.name.startswith(f"part-{store.instance}-") and segment.suffix == ".ndjson"
        assert 0 < store.metrics.value("intilery_store_flush_seconds_count") < 200
        await store.close()
        [closed] = files(tmp_path / "events")
        assert closed.name.endswith(".ndjson.gz")
        assert sorted(e["n"] for e in read_events(tmp_path)) == list(range(200))

    async def test_rotation_by_size_and_by_hour(self, tmp_path):
        store = FileStore(tmp_path, segment_max_bytes=10_000)
        await store.start()
        for i in range(30):
            await store.append([line(i, pad=1000)], partition="dt=2026-11-28/hr=10")
        await store.append([line(99)], partition="dt=2026-11-28/hr=11")
        await store.close()
        hour10 = files(tmp_path / "events/dt=2026-11-28/hr=10")
        assert len(hour10) >= 3 and all(p.name.endswith(".gz") for p in hour10)
        assert [e["n"] for e in read_events(tmp_path)] == list(range(30)) + [99]

    async def test_two_processes_never_share_a_file(self, tmp_path):
        """Two stores on one data dir get distinct locked instance names."""
        one, two = FileStore(tmp_path), FileStore(tmp_path)
        await one.start()
        await two.start()
        assert one.instance != two.instance
        await one.append([line(1)], partition="dt=2026-11-28/hr=10")
        await two.append([line(2)], partition="dt=2026-11-28/hr=10")
        assert len(files(tmp_path / "events")) == 2
        await one.close()
        await two.close()

    async def test_crash_recovery_moves_a_torn_line_and_compresses(self, tmp_path):
        """A segment left open by a dead process is trimmed to whole lines and gzipped at the next start."""
        partition = tmp_path / "events/dt=2026-11-28/hr=10"
        partition.mkdir(parents=True)
        (partition / "part-deadhost_0-000007.ndjson").write_bytes(line(1) + line(2) + b'{"messageId":"m3","n"')
        store = FileStore(tmp_path)
        await store.start()
        assert [e["n"] for e in read_events(tmp_path)] == [1, 2]
        [torn] = read_events(tmp_path, "rejected")
        assert torn["code"] == "torn_line" and torn["payload"] == '{"messageId":"m3","n"'
        assert [p.name for p in files(partition)] == ["part-deadhost_0-000007.ndjson.gz"]
        await store.close()

    async def test_a_segment_of_a_live_process_is_left_alone(self, tmp_path):
        one = FileStore(tmp_path)
        await one.start()
        await one.append([line(1)], partition="dt=2026-11-28/hr=10")
        two = FileStore(tmp_path)
        await two.start()
        [segment] = files(tmp_path / "events")
        assert segment.suffix == ".ndjson"  # still open, not compressed by the second store
        await two.close()
        await one.close()

    async def test_overload_is_refused_not_queued(self, tmp_path):
        """Past max_pending_bytes, append raises store_overloaded instead of growing memory."""
        store = FileStore(tmp_path, max_pending_bytes=50_000)
        await store.start()
        waiters, refused = [], 0
        for i in range(200):
            try:
                waiters.append(store.append([line(i, pad=1000)], partition="dt=2026-11-28/hr=10"))
            except Unavailable as exc:
                assert exc.code == "store_overloaded" and exc.retry_after >= 1
                refused += 1
        assert refused > 0
        await asyncio.gather(*waiters)
        assert len(list(read_events(tmp_path))) == 200 - refused
        await store.close()

    async def test_unwritable_directory_then_recovery(self, tmp_path):
        """Writes fail with store_unavailable while the directory refuses them, and resume by themselves."""
        store = FileStore(tmp_path)
        await store.start()
        with unwritable(tmp_path / "events"):
            with pytest.raises(Unavailable) as refused:
                await store.append([line(1)], partition="dt=2026-11-28/hr=10")
            assert refused.value.code == "store_unavailable"
            ready, reason = await store.ready()
            assert not ready and "cannot write" in reason
        assert await store.ready() == (True, None)
        await store.append([line(2)], partition="dt=2026-11-28/hr=10")
        assert [e["n"] for e in read_events(tmp_path)] == [2]
        await store.close()

    async def test_a_removed_directory_is_detected_and_recreated(self, tmp_path):
        """A segment deleted from under the store fails the commit (not silently lost), then a new one is made."""
        store = FileStore(tmp_path)
        await store.start()
        await store.append([line(1)], partition="dt=2026-11-28/hr=10")
        shutil.rmtree(tmp_path / "events")
        with pytest.raises(Unavailable):
            await store.append([line(2)], partition="dt=2026-11-28/hr=10")
        await store.append([line(3)], partition="dt=2026-11-28/hr=10")
        assert [e["n"] for e in read_events(tmp_path)] == [3]
        await store.close()

    @pytest.mark.parametrize("policy", ["interval", "never"])
    async def test_other_fsync_policies_store_the_same(self, tmp_path, policy):
        store = FileStore(tmp_path, fsync=policy, fsync_interval=0.05)
        await store.start()
        await asyncio.gather(*(store.append([line(i)], partition="dt=2026-11-28/hr=10") for i in range(50)))
        await store.close()
        assert sorted(e["n"] for e in read_events(tmp_path)) == list(range(50))


class TestThroughTheApp:
    async def test_unwritable_store_answers_503_and_readyz_says_so(self, make_client, config):
        """The HTTP face of a broken store: 503 + Retry-After, /readyz 503 with the reason, then recovery."""
        client = await make_client(config)
        with unwritable(config.data_dir / "events"):
            answer = await client.post("/v1/track", json={"userId": "u", "event": "E"}, headers=KEY)
            assert answer.status == 503 and answer.headers["Retry-After"]
            assert (await answer.json())["code"] == "store_unavailable"
            ready = await client.get("/readyz")
            assert ready.status == 503 and "cannot write" in (await ready.json())["reason"]
        assert (await client.get("/readyz")).status == 200
        answer = await client.post("/v1/track", json={"userId": "u", "event": "Later"}, headers=KEY)
        assert answer.status == 200
        assert [e["event"] for e in stored(config.data_dir)] == ["Later"]

    async def test_gzip_segments_are_valid_gzip(self, make_client, config):
        client = await make_client(config)
        await client.post("/v1/track", json={"userId": "u", "event": "E"}, headers=KEY)
        await client.close()
        [segment] = files(config.data_dir / "events")
        assert orjson.loads(gzip.decompress(segment.read_bytes()))["event"] == "E"


async def test_duckdb_reads_the_store_as_is(make_client, config):
    """The README's query: open and gzipped segments, Hive partitions, straight into DuckDB."""
    duckdb = pytest.importorskip("duckdb")
    client = await make_client(config)
    batch = {"batch": [{"type": "track", "userId": "u", "event": f"E{i % 2}"} for i in range(10)]}
    await client.post("/v1/batch", json=batch, headers=KEY)
    await client.close()  # closes and gzips the segment
    await (await make_client(config)).post("/v1/page", json={"anonymousId": "a"}, headers=KEY)  # an open one too
    pattern = str(config.data_dir / "events/**/*.ndjson*")
    rows = duckdb.sql(
        f"SELECT type, event, count(*) FROM read_json_auto('{pattern}', hive_partitioning = 1) GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    assert rows == [("page", None, 1), ("track", "E0", 5), ("track", "E1", 5)]
