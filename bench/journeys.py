"""Journeys: runs advanced per CPU-second, timers fired per second, and 100,000 runs waiting.

    python -m bench.journeys              # every measurement (~2-4 min)
    python -m bench.journeys --quick      # 20,000 runs waiting instead of 100,000

1. *advanced per CPU-second*: ``--events`` people enter a journey (``Product Added``) and wait for
   ``Order Completed`` of their cart; then each one's order is written to the log: the runner's
   ``step`` moving every run a step (and ending it), over the process's CPU time (SQLite, the
   profile database of a data directory; one transaction per batch of 500 events).
2. *timers fired per second*: as many runs whose ``wait`` fell due, fired by ``fire`` (500 a
   transaction, each putting one send in the outbox): runs over wall time.
3. *waiting*: ``--waiting`` runs entered through the log and waiting (a wait of an hour), of which
   10,000 fall due in the same second, then ``intilery journeys run`` (its own process) started:
   its RSS once it has caught up, and the delay between the moment the 10,000 fell due and their
   sends' creation in the outbox (p50, p99).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson

SECRET_URL = "http://127.0.0.1:9/hook"
CART = """\
entry: {event: Product Added}
instance_key: properties.cart_id
steps:
  - wait_for: {event: Order Completed, same_instance: true, timeout: 1d}
    on_event: [{exit: converted}]
  - send: {destination: crm}
"""
LATER = """\
entry: {event: Signed Up}
steps:
  - wait: {until: properties.due_at}
  - send: {destination: crm}
"""


def iso(t: float) -> str:
    from collector.engage.journeys.channels import iso as fmt

    return fmt(t)


def write_log(data_dir: Path, events: list[dict], per: int = 5000) -> None:
    directory = data_dir / "events" / "dt=2026-12-08" / "hr=02"
    directory.mkdir(parents=True, exist_ok=True)
    start = len(list(directory.iterdir()))
    for n, i in enumerate(range(0, len(events), per)):
        path = directory / f"part-bench_0-{start + n + 1:06d}.ndjson"
        path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events[i : i + per]))


def folder(root: Path, journey: str) -> Path:
    engage = root / "engage"
    (engage / "journeys").mkdir(parents=True, exist_ok=True)
    (engage / "destinations").mkdir(parents=True, exist_ok=True)
    (engage / "destinations" / "crm.yaml").write_text(
        f'url: {SECRET_URL}\nsecret: "whsec_{"YmVuY2gtc2VjcmV0LWJlbmNoLXNlY3JldC1iZW5jaCE="}"\n')
    (engage / "journeys" / "bench.yaml").write_text(journey)
    return engage


def ev(name: str, user: str, **props) -> dict:
    return {"type": "track", "event": name, "userId": user, "messageId": uuid.uuid4().hex, "source": "web",
            "timestamp": "2026-12-08T02:00:00.000Z", "receivedAt": iso(time.time() - 5), "properties": props}  # fmt: skip (received 5 s ago: not held, runner.HOLD)


def runner_for(root: Path):
    from collector.engage.journeys import definitions
    from collector.engage.journeys.runner import Runner
    from collector.engage.journeys.store import open_journeys

    store = open_journeys(root / "data" / "profiles.db")
    return store, Runner(store, root / "data", definitions.load(root / "engage"))


def drain(runner) -> int:
    total = 0
    while True:
        n = runner.step()
        if not n:
            return total
        total += n


def advanced(n: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder(root, CART)
        write_log(root / "data", [ev("Product Added", f"u{i}", cart_id=f"c{i}") for i in range(n)])
        store, runner = runner_for(root)
        t0, c0 = time.perf_counter(), time.process_time()
        drain(runner)
        enter = (time.perf_counter() - t0, time.process_time() - c0)
        write_log(root / "data", [ev("Order Completed", f"u{i}", cart_id=f"c{i}") for i in range(n)])
        t0, c0 = time.perf_counter(), time.process_time()
        drain(runner)
        move = (time.perf_counter() - t0, time.process_time() - c0)
        ended = store._all("SELECT COUNT(*) FROM journey_runs WHERE outcome = 'converted'")[0][0]
        runner.close()
        store.close()
    assert ended == n, ended
    return {"entered_per_cpu_s": round(n / enter[1]), "advanced_per_cpu_s": round(n / move[1]),
            "advanced_per_s": round(n / move[0])}  # fmt: skip


def fired(n: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder(root, LATER)
        due = time.time() + 5
        write_log(root / "data", [ev("Signed Up", f"u{i}", due_at=iso(due)) for i in range(n)])
        store, runner = runner_for(root)
        drain(runner)
        while time.time() < due:
            time.sleep(0.05)
        t0, c0 = time.perf_counter(), time.process_time()
        total = 0
        while True:
            k = runner.fire()
            if not k:
                break
            total += k
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        sends = store._all("SELECT COUNT(*) FROM outbox")[0][0]
        runner.close()
        store.close()
    assert total == n == sends, (total, sends)
    return {"fired_per_s": round(n / wall), "fired_per_cpu_s": round(n / cpu)}


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def waiting(n: int, burst: int = 10_000) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        engage = folder(root, LATER)
        later = time.time() + 3600
        build = time.perf_counter()
        events = [ev("Signed Up", f"w{i}", due_at=iso(later)) for i in range(n - burst)]
        write_log(root / "data", events)
        store, runner = runner_for(root)
        drain(runner)  # the waiting runs, entered through the log
        moment = float(int(time.time()) + 30)  # the burst's second, after the process has caught up
        write_log(root / "data", [ev("Signed Up", f"b{i}", due_at=iso(moment)) for i in range(burst)])
        drain(runner)
        runner.close()
        store.close()
        built = time.perf_counter() - build
        proc = subprocess.Popen([sys.executable, "-m", "collector", "journeys", "run", "--data-dir", str(root / "data"),
                                 "--engage-dir", str(engage)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            time.sleep(max(0.0, moment - time.time() - 2))
            before = rss(proc.pid)
            from collector.engage.journeys.store import open_journeys

            store = open_journeys(root / "data" / "profiles.db")
            deadline = time.time() + 120
            while time.time() < deadline:
                if store._all("SELECT COUNT(*) FROM outbox")[0][0] >= burst:
                    break
                store.commit()
                time.sleep(0.2)
            created = sorted(c - moment for (c,) in store._all("SELECT created FROM outbox"))
            store.close()
            after = rss(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    assert len(created) == burst, len(created)
    return {"waiting": n, "built_s": round(built, 1), "rss_mb_waiting": round(before / 2**20, 1),
            "rss_mb_after_burst": round(after / 2**20, 1), "delay_p50_s": round(statistics.median(created), 3),
            "delay_p99_s": round(created[int(len(created) * 0.99) - 1], 3), "delay_max_s": round(created[-1], 3)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--waiting", type=int, default=100_000)
    args = parser.parse_args()
    n = 5_000 if args.quick else args.events
    print(orjson.dumps({"advanced": advanced(n)}).decode(), flush=True)
    print(orjson.dumps({"fired": fired(n)}).decode(), flush=True)
    print(orjson.dumps({"waiting": waiting(20_000 if args.quick else args.waiting)}).decode(), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
