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
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest


from collector.log.layout import LOCK_DIR
from collector.log.segments import try_lock
from helpers import CollectorProcess, read_events, wait_until

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


def batch(url: str, ids: list[str], timeout: float = 30) -> int:
    """One batch of tracks with these messageIds, on a new connection."""
    body = json.dumps({"batch": [{"type": "track", "event": "Order Completed", "userId": f"u-{m}", "messageId": m}
                                 for m in ids]}).encode()  # fmt: skip
    request = urllib.request.Request(url + "/v1/batch", body, {"Content-Type": "application/json", "X-Write-Key": KEY})
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return answer.status


def listening_inodes(port: int) -> set[str]:
    """The socket inodes listening on 127.0.0.1:``port`` (one per worker: SO_REUSEPORT)."""
    found = set()
    with open("/proc/net/tcp") as fh:
        for row in fh.read().splitlines()[1:]:
            fields = row.split()
            if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":
                found.add(fields[9])
    return found


def serving_workers(supervisor: int, port: int) -> list[int]:
    """The children of the supervisor that listen on the port: the workers, not the host writer."""
    inodes = {f"socket:[{i}]" for i in listening_inodes(port)}
    workers = []
    for pid in workers_of(supervisor):
        try:
            links = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        except OSError:
            continue
        if links & inodes:
            workers.append(pid)
    return workers


def is_running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class TestWorkers:
    def test_two_workers_share_the_port_survive_a_kill_and_stop_cleanly(self, tmp_path):
        """Two workers commit through one host writer (one store instance); a SIGKILLed worker is replaced; every acknowledged event is stored once; SIGTERM stops all."""
        collector = CollectorProcess(tmp_path, sources=[{"name": "web", "write_key": KEY}], args=["--workers", "2"])
        collector.start()
        supervisor = collector.proc.pid
        try:
            first = wait_until(lambda: len(serving_workers(supervisor, collector.port)) == 2 and serving_workers(
                supervisor, collector.port), timeout=DEADLINE, what="two workers")  # fmt: skip
            assert len(workers_of(supervisor)) == 3, "two workers and the host writer"
            # one store instance: the host writer's, for both workers
            wait_until(lambda: len(held_instances(collector.data_dir)) == 1, timeout=DEADLINE, what="the store instance")

            acked = [f"before-{n}" for n in range(30)]
            assert [track(collector.url, m) for m in acked] == [200] * 30

            victim = first[0]
            os.kill(victim, signal.SIGKILL)
            now = wait_until(
                lambda: (w := serving_workers(supervisor, collector.port)) and len(w) == 2 and victim not in w and w,
                timeout=DEADLINE, what="the killed worker to be replaced",
            )
            assert len(held_instances(collector.data_dir)) == 1
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

    def test_a_port_another_listener_holds_stops_the_supervisor_at_once(self, tmp_path):
        """When another listener holds the port, ``serve --workers 2`` says so in one line and exits 2
        before any worker starts, rather than restarting workers that cannot bind (issue 35)."""
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
        assert code == 2
        text = collector.log.read_text()
        assert f"port {port} on 127.0.0.1 is in use" in text and "Traceback" not in text


class TestOneDuplicateFilterPerHost:
    """With --workers N, the host writer holds the one duplicate filter: a resend is a duplicate on any worker."""

    @pytest.mark.parametrize("workers", [2, 3])
    def test_a_batch_resent_over_new_connections_is_stored_once(self, tmp_path, workers):
        """A batch of 100 new messageIds sent 20 times, each over a new connection (so to any worker), stores 100 lines; after a restart, resends still store none."""
        collector = CollectorProcess(tmp_path, sources=[{"name": "web", "write_key": KEY}], args=["--workers", str(workers)])
        ids = [f"resent-{n}" for n in range(100)]
        with collector:
            assert [batch(collector.url, ids) for _ in range(20)] == [200] * 20
        assert collector.stop() == 0
        assert sorted(e["messageId"] for e in read_events(collector.data_dir)) == sorted(ids)

        with collector:  # the new writer rebuilds the filter from the store
            assert [batch(collector.url, ids) for _ in range(5)] == [200] * 5
        stored = Counter(e["messageId"] for e in read_events(collector.data_dir))
        assert set(stored) == set(ids) and set(stored.values()) == {1}

    def test_a_worker_killed_with_lines_in_flight_loses_no_acknowledged_event_and_stores_none_twice(self, tmp_path):
        """Clients resend every batch until it is acknowledged while workers are SIGKILLed under them: every acknowledged id is stored, none twice."""
        collector = CollectorProcess(tmp_path, sources=[{"name": "web", "write_key": KEY}], args=["--workers", "2"])
        collector.start()
        supervisor = collector.proc.pid
        acked: list[str] = []
        resent = Counter()
        stop = threading.Event()
        failures: list[BaseException] = []

        def client(name: str) -> None:
            number = 0
            try:
                while not stop.is_set():
                    ids = [f"{name}-{number}-{n}" for n in range(50)]
                    number += 1
                    deadline = time.monotonic() + DEADLINE
                    while True:  # a client resends what was not acknowledged, with the same ids
                        assert time.monotonic() < deadline, "a batch was never acknowledged"
                        try:
                            if batch(collector.url, ids, timeout=10) == 200:
                                break
                        except (OSError, urllib.error.HTTPError):
                            pass
                        resent[name] += 1
                        time.sleep(0.05)  # a client's back-off before its resend (not a wait for a condition)
                    acked.extend(ids)
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                failures.append(exc)

        clients = [threading.Thread(target=client, args=(f"c{i}",), daemon=True) for i in range(4)]
        try:
            wait_until(lambda: len(serving_workers(supervisor, collector.port)) == 2, timeout=DEADLINE, what="two workers")
            for thread in clients:
                thread.start()
            kills, deadline = 0, time.monotonic() + 4 * DEADLINE
            while kills < 3 or sum(resent.values()) == 0:  # until a kill cut requests short (they were resent)
                assert time.monotonic() < deadline, "no kill ever caught a request in flight"
                before = len(acked)
                wait_until(lambda: len(acked) > before, timeout=DEADLINE, what="batches acknowledged")
                workers = wait_until(lambda: len(w := serving_workers(supervisor, collector.port)) == 2 and w,
                                     timeout=DEADLINE, what="two workers")  # fmt: skip
                os.kill(workers[kills % 2], signal.SIGKILL)
                kills += 1
            before = len(acked)
            wait_until(lambda: len(acked) > before + 200, timeout=DEADLINE, what="batches after the last kill")
        finally:
            stop.set()
            for thread in clients:
                thread.join(timeout=DEADLINE)
            code = collector.stop()
        assert not failures, failures
        assert code == 0
        stored = Counter(e["messageId"] for e in read_events(collector.data_dir))
        assert [m for m, n in stored.items() if n > 1] == [], "stored twice"
        assert [m for m in acked if m not in stored] == [], "acknowledged but lost"

    def test_the_host_writer_killed_is_replaced_and_rebuilds_the_filter_from_the_store(self, tmp_path):
        """SIGKILL of the host writer: requests are answered 503 or wait, a new writer takes over on the same socket, and a resend of what was stored before is still a duplicate."""
        collector = CollectorProcess(tmp_path, sources=[{"name": "web", "write_key": KEY}], args=["--workers", "2"])
        ids = [f"before-writer-kill-{n}" for n in range(100)]
        with collector:
            supervisor = collector.proc.pid
            workers = wait_until(lambda: len(w := serving_workers(supervisor, collector.port)) == 2 and w,
                                 timeout=DEADLINE, what="two workers")  # fmt: skip
            assert batch(collector.url, ids) == 200
            [writer] = [p for p in workers_of(supervisor) if p not in workers]
            os.kill(writer, signal.SIGKILL)
            wait_until(lambda: len(workers_of(supervisor)) == 3 and writer not in workers_of(supervisor),
                       timeout=DEADLINE, what="a new host writer")  # fmt: skip

            def resent() -> bool:
                try:
                    return batch(collector.url, ids) == 200
                except urllib.error.HTTPError as answer:  # 503 while the new writer starts
                    assert answer.code == 503
                    return False

            wait_until(resent, timeout=DEADLINE, what="the resend to be acknowledged")
            assert [batch(collector.url, ids) for _ in range(5)] == [200] * 5
            assert sorted(serving_workers(supervisor, collector.port)) == sorted(workers), "the workers lived on"
        assert collector.stop() == 0
        stored = Counter(e["messageId"] for e in read_events(collector.data_dir))
        assert set(stored) == set(ids) and set(stored.values()) == {1}


def scrape(url: str, name: str) -> float:
    """The sum of a metric's samples in one scrape of /metrics, on a new connection."""
    with urllib.request.urlopen(url + "/metrics", timeout=30) as answer:
        text = answer.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))  # fmt: skip


class TestMetricsAcrossWorkers:
    def test_every_scrape_counts_every_worker(self, tmp_path):
        """With --workers 2, N accepted events read N on every scrape of /metrics (whichever worker answers), also after a worker is replaced."""
        collector = CollectorProcess(tmp_path, sources=[{"name": "web", "write_key": KEY}], args=["--workers", "2"])
        with collector:
            supervisor = collector.proc.pid
            wait_until(lambda: len(serving_workers(supervisor, collector.port)) == 2, timeout=DEADLINE, what="two workers")
            assert [track(collector.url, f"m-{n}") for n in range(40)] == [200] * 40
            assert [scrape(collector.url, "intilery_events_accepted_total") for _ in range(12)] == [40] * 12
            assert scrape(collector.url, "intilery_store_flush_seconds_count") >= 1  # the host writer's, too

            victim = serving_workers(supervisor, collector.port)[0]
            os.kill(victim, signal.SIGKILL)
            wait_until(lambda: (w := serving_workers(supervisor, collector.port)) and len(w) == 2 and victim not in w,
                       timeout=DEADLINE, what="the killed worker to be replaced")  # fmt: skip
            assert [track(collector.url, f"n-{n}") for n in range(10)] == [200] * 10
            assert [scrape(collector.url, "intilery_events_accepted_total") for _ in range(12)] == [50] * 12
            assert wait_until(lambda: scrape(collector.url, "intilery_store_ready") == 1, timeout=DEADLINE,
                              what="the store's readiness in a scrape")  # fmt: skip
