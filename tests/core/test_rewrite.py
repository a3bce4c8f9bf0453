"""The one rewrite step: a SIGKILL at any step leaves the old or the new segment whole."""

from __future__ import annotations

import gzip
import select
import signal
import subprocess
import sys
import time

import orjson
import pytest

from collector.log import segments
from helpers import read_events
from collector.log.files import FileStore

from collector.log.rewrite import STEPS, Conflict, recover, rewrite

PARTITION = "dt=2026-11-28/hr=10"
DEADLINE = 30.0  # seconds: a liveness bound for the child to reach its step, not a measurement

CHILD = """
import sys, time
from pathlib import Path
from collector.log.rewrite import rewrite

def pause(step):
    if step == sys.argv[2]:
        print(step, flush=True)
        time.sleep(600)

rewrite(Path(sys.argv[1]), lambda line: None if b'"erase-me"' in line else line, pause=pause)
print("finished", flush=True)
"""


def event(n: int, user: str) -> bytes:
    return orjson.dumps({"type": "track", "event": f"E{n}", "userId": user, "messageId": f"m{n}"}) + b"\n"


@pytest.fixture
def closed_segment(tmp_path):
    directory = tmp_path / "events" / PARTITION
    directory.mkdir(parents=True)
    path = directory / "part-h_0-000001.ndjson"
    path.write_bytes(b"".join(event(n, "erase-me" if n % 3 == 0 else "keep") for n in range(30)))
    return segments.compress(path)


def users(path) -> list[str]:
    with gzip.open(path, "rb") as fh:  # raises on a torn gzip stream
        return [orjson.loads(line)["userId"] for line in fh if not line.isspace()]  # blank: erased


def starts(path) -> dict[str, int]:
    """Each event's name by the byte offset its line starts at (decompressed)."""
    data, found, at = gzip.decompress(path.read_bytes()), {}, 0
    for line in data.splitlines(keepends=True):
        if not line.isspace():
            found[orjson.loads(line)["event"]] = at
        at += len(line)
    return found


OLD = ["erase-me" if n % 3 == 0 else "keep" for n in range(30)]
NEW = ["keep"] * 20


def run_until(path, step: str) -> subprocess.Popen:
    """Start a child that rewrites ``path`` and stops after ``step``; returns once it is there."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), step], stdout=subprocess.PIPE)
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        ready, _, _ = select.select([child.stdout], [], [], 0.5)
        if ready:
            said = child.stdout.readline().decode().strip()
            assert said == step, f"the child said {said!r}"
            return child
        assert child.poll() is None, "the child ended before its step"
    child.kill()
    pytest.fail(f"the child did not reach {step} within {DEADLINE:g} s")


class TestRewrite:
    def test_a_rewrite_removes_the_lines_and_leaves_nothing_behind(self, closed_segment):
        """Every line the change drops is gone, the others are as they were, and no temporary file is left."""
        assert rewrite(closed_segment, lambda line: None if b'"erase-me"' in line else line) == 10
        assert users(closed_segment) == NEW
        assert sorted(p.name for p in closed_segment.parent.iterdir()) == [closed_segment.name]

    def test_a_rewrite_moves_no_line(self, closed_segment):
        """Every kept line starts at the byte it started at, removed and shortened lines included
        (cursors and indexes into the segment stay true); the removed ones hold nothing of theirs."""
        before, size = starts(closed_segment), len(gzip.decompress(closed_segment.read_bytes()))
        shortened = orjson.dumps({"type": "track", "event": "E1", "userId": "k", "messageId": "m1"})
        assert rewrite(closed_segment, lambda line: None if b'"erase-me"' in line
                       else shortened if b'"E1"' in line else line) == 11  # fmt: skip
        data = gzip.decompress(closed_segment.read_bytes())
        assert len(data) == size and b"erase-me" not in data
        assert starts(closed_segment) == {name: at for name, at in before.items() if int(name[1:]) % 3}
        assert orjson.loads(data[before["E1"]:].split(b"\n")[0])["userId"] == "k"

    def test_a_replacement_longer_than_its_line_is_refused(self, closed_segment):
        """A longer line would move every line after it: refused, and the segment left as it was."""
        with pytest.raises(ValueError):
            rewrite(closed_segment, lambda line: line + b" " if b'"E4"' in line else line)
        assert users(closed_segment) == OLD
        assert sorted(p.name for p in closed_segment.parent.iterdir()) == [closed_segment.name]

    def test_an_unchanged_segment_is_not_rewritten(self, closed_segment):
        """A change that changes nothing leaves the very same file (same inode)."""
        inode = closed_segment.stat().st_ino
        assert rewrite(closed_segment, lambda line: line) == 0
        assert closed_segment.stat().st_ino == inode

    def test_a_segment_replaced_meanwhile_is_not_overwritten(self, closed_segment):
        """When the segment is replaced while it is rewritten, the replacement stays and Conflict is raised."""
        replacement = gzip.compress(event(99, "restored"))

        def pause(step):
            if step == "ready":
                closed_segment.write_bytes(replacement)

        with pytest.raises(Conflict):
            rewrite(closed_segment, lambda line: None, pause=pause)
        assert closed_segment.read_bytes() == replacement
        assert sorted(p.name for p in closed_segment.parent.iterdir()) == [closed_segment.name]

    def test_an_open_segment_is_refused(self, tmp_path):
        """Only closed segments are rewritten: an open one is still being appended to."""
        path = tmp_path / "events" / PARTITION / "part-h_0-000002.ndjson"
        with pytest.raises(ValueError):
            rewrite(path, lambda line: line)


@pytest.mark.parametrize("step", STEPS)
def test_sigkill_at_each_step_leaves_the_old_or_the_new_file_whole(closed_segment, step):
    """Kill -9 after each step, then recover: the rewrite is rolled back before it is ready, finished after."""
    child = run_until(closed_segment, step)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=DEADLINE)
    child.stdout.close()
    recover(closed_segment.parent.parent.parent.parent)
    expected = OLD if STEPS.index(step) < STEPS.index("ready") else NEW
    assert users(closed_segment) == expected
    assert sorted(p.name for p in closed_segment.parent.iterdir()) == [closed_segment.name], "a leftover file"


async def test_the_store_recovers_a_killed_rewrite_at_start(closed_segment):
    """A rewrite killed when ready is finished by the next FileStore start, before anything reads the log."""
    child = run_until(closed_segment, "ready")
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=DEADLINE)
    child.stdout.close()
    data_dir = closed_segment.parent.parent.parent.parent
    store = FileStore(data_dir)
    await store.start()
    await store.close()
    assert [e["userId"] for e in read_events(data_dir)] == NEW


def test_a_segment_restored_while_the_process_was_down_is_not_overwritten(closed_segment):
    """A rewrite killed when ready, then the segment restored (from a backup) before the next start:
    recovery finds the segment is not the file the rewrite read and drops the leftover (D8, gap 1)."""
    child = run_until(closed_segment, "ready")
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=DEADLINE)
    child.stdout.close()
    restored = gzip.compress(event(99, "restored"))
    closed_segment.unlink()
    closed_segment.write_bytes(restored)
    recover(closed_segment.parent.parent.parent.parent)
    assert closed_segment.read_bytes() == restored
    assert sorted(p.name for p in closed_segment.parent.iterdir()) == [closed_segment.name], "a leftover file"


async def test_a_start_during_another_process_s_rewrite_recovers_every_leftover(closed_segment):
    """A rewrite killed when ready leaves a leftover; another process (a CLI erasure) is rewriting
    another segment when the collector starts: the start waits for the rewrite lock and finishes the
    leftover, rather than leaving it for a later start (D8, gap 2)."""
    import asyncio

    child = run_until(closed_segment, "ready")
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=DEADLINE)
    child.stdout.close()
    other = closed_segment.parent.parent / "hr=11" / "part-h_1-000002.ndjson"  # another directory
    other.parent.mkdir()
    other.write_bytes(event(1, "keep") + event(2, "erase-me"))
    erasing = run_until(segments.compress(other), "open")  # holds the rewrite lock
    data_dir = closed_segment.parent.parent.parent.parent
    store = FileStore(data_dir)
    start = asyncio.ensure_future(store.start())
    await asyncio.sleep(0)
    erasing.send_signal(signal.SIGKILL)
    erasing.wait(timeout=DEADLINE)
    erasing.stdout.close()
    await asyncio.wait_for(start, DEADLINE)
    await store.close()
    assert users(closed_segment) == NEW, "a leftover waits for a later start"
    assert not list(data_dir.glob("events/**/*.rewrite.*"))
