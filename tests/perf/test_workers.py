"""``intilery serve --workers N``: processes sharing the port, supervised, stopped cleanly.

These tests wait for things to happen (a worker to be replaced) with generous deadlines,
but never pass or fail on how fast anything is.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from collector.log.reader import read_events
from collector.log.layout import LOCK_DIR
from collector.log.segments import try_lock
from helpers import CollectorProcess, wait_until

KEY = "wk_test"
DEADLINE = 60.0  # seconds: a liveness bound, not a measurement


def workers_of(supervisor: int) -> list[int]:
    try:
        with open(f"/proc/{supervisor}/task/{supervisor}/children") as fh:
            return sorted(int(p) for p in fh.read().split())
    except OSError:
        return []


def held_instances(data_dir: Path) -> list[str]:
    """Store instance names (``<host>_<n>``) whose lock is held by a live process.

    Other locks live there too (``profiles.lock``: the host's one profile builder; ``rewrite.lock``):
    they are not instances, and counting them would take one worker for two."""
    held = []
    for lock in sorted((data_dir / LOCK_DIR).glob("*_*.lock")):
        fd = try_lock(data_dir, lock.stem)
        if fd is None:
            held.append(lock.stem)
        else:
            os.close(fd)
    return held


def track(url: str, message_id: str) -> int:
    """One track on a new connection (so the kernel may pick either worker)."""
    body = json.dumps({"type": "track", "event": "Signed Up", "userId": "u1", "messageId": message_id}).encode()
    request = urllib.request.Request(url + "/v1/track", body, {"Content-Type": "application/json", "X-Write-Key": KEY})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.status


def is_running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class TestWorkers:
    def test_two_workers_share_the_port_survive_a_kill_and_stop_cleanly(self, tmp_path):
        """Two workers each hold a store instance; a SIGKILLed worker is replaced; every acknowledged event is stored once; SIGTERM stops all."""
        collector = CollectorProcess(tmp_path, sources=[{"name": "web", "write_key": KEY}], args=["--workers", "2"])
        collector.start()
        supervisor = collector.proc.pid
        try:
            first = wait_until(lambda: len(workers_of(supervisor)) == 2 and workers_of(supervisor), timeout=DEADLINE, what="two workers")
            assert len(wait_until(lambda: len(held_instances(collector.data_dir)) == 2 and held_instances(collector.data_dir),
                                timeout=DEADLINE, what="two store instances")) == 2  # fmt: skip

            acked = [f"before-{n}" for n in range(30)]
            assert [track(collector.url, m) for m in acked] == [200] * 30

            victim = first[0]
            os.kill(victim, signal.SIGKILL)
            now = wait_until(
                lambda: (w := workers_of(supervisor)) and len(w) == 2 and victim not in w and w,
                timeout=DEADLINE, what="the killed worker to be replaced",
            )
            wait_until(lambda: len(held_instances(collector.data_dir)) == 2, timeout=DEADLINE, what="the new worker's store")
            assert not is_running(victim)

            after = [f"after-{n}" for n in range(30)]
            assert [track(collector.url, m) for m in after] == [200] * 30
            acked += after
        finally:
            code = collector.stop()

        assert code == 0
        assert not any(is_running(pid) for pid in first + now)
        assert held_instances(collector.data_dir) == []
        stored = [e["messageId"] for e in read_events(collector.data_dir)]
        assert sorted(stored) == sorted(acked)

    def test_a_worker_that_cannot_start_makes_the_supervisor_give_up(self, tmp_path):
        """When another listener holds the port, workers fail at start and the supervisor exits 1 rather than loop."""
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", 0))
            squatter.listen()
            port = squatter.getsockname()[1]
            collector = CollectorProcess(tmp_path, sources=[{"name": "web", "write_key": KEY}], port=port)
            cmd = [sys.executable, "-m", "collector", "serve", "--config", str(collector.config), "--host", "127.0.0.1",
                   "--port", str(port), "--data-dir", str(collector.data_dir), "--workers", "2"]  # fmt: skip
            with open(collector.log, "ab") as log:
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
                try:
                    code = proc.wait(timeout=DEADLINE * 2)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
        assert code == 1
        assert "keeps failing at start" in collector.log.read_text()
